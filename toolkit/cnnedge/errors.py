"""One error type for everything a user can get wrong.

The CLI turns a :class:`CnnedgeError` into a single ``error: ...`` line and exit code 2; library
users catch it like any exception. Messages name the file or value and what is wrong with it;
:func:`one_line` quotes another library's message inside one.
"""


class CnnedgeError(Exception):
    """A user-facing error: bad input, missing files, unknown names. Exit code 2 in the CLI."""

    exit_code = 2


def one_line(msg: object, limit: int | None = 300) -> str:
    """``msg`` (an exception or text) as one line, whitespace runs collapsed to one space: how
    a message from another library is quoted in ours. It is cut at ``limit`` characters (such
    messages can run to pages); ``limit=None`` keeps a message cnnedge composed whole."""
    text = " ".join(str(msg).split())
    return text if limit is None else text[:limit]
