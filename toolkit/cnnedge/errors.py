"""One error type for everything a user can get wrong.

The CLI turns a :class:`CnnedgeError` into a single ``error: ...`` line and exit code 2; library
users catch it like any exception. Messages name the file or value and what is wrong with it.
"""


class CnnedgeError(Exception):
    """A user-facing error: bad input, missing files, unknown names. Exit code 2 in the CLI."""

    exit_code = 2
