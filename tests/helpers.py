"""Assertions the bad-input tests share: one ``error:`` line, and a folder's files unchanged."""

from pathlib import Path


def one_error(capsys, rc, *needles) -> str:
    """The command failed with exit 2 and exactly one ``error: …`` line holding ``needles``."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, err)
    return err


def tree(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes ('nothing lost' means this is unchanged); a
    run's lock file, which lives only while a command runs, aside."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".lock"}
