"""The shape of the code: layers import one way, files stay readable, one place names a run's
files, the artifact table and the runtime registry agree, and docs/cli.md is current. The
library (toolkit/cnnedge) and the demo (edge_demo/) are held to the same checks."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnedge import artifacts, runtime
from cnnedge.run import Run

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "toolkit" / "cnnedge"
DEMO = REPO / "edge_demo"
MAX_LINES = 500


def _module(path: Path) -> str:
    root = DEMO.parent if path.is_relative_to(DEMO) else LIB.parent
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library():
    return {_module(p): p for p in sorted(LIB.rglob("*.py")) if "recipes" not in p.parts}


def _demo():
    return {_module(p): p for p in sorted(DEMO.rglob("*.py"))}


def _code():
    """Every module the checks below hold to: the library's and the demo's."""
    return {**_library(), **_demo()}


def _imports(path: Path, name: str, modules) -> set[str]:
    """cnnedge modules ``path`` imports anywhere (module level or inside functions)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in modules and t != name}
    return out


def test_no_import_cycles():
    mods = _code()
    graph = {m: _imports(p, m, mods) for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert graph["cnnedge.artifacts"] <= {"cnnedge.errors", "cnnedge.utils"}  # the table is a leaf
    assert "cnnedge.train" not in graph["cnnedge.evaluate"] | graph["cnnedge.verify"]


def test_edge_demo_sits_between_the_library_and_the_cli():
    """The demo uses the library; no library module imports the demo but the CLI's ``demo``
    command (the top layer), and the demo imports the CLI only in ``edge_demo.__main__``
    (``python -m edge_demo`` is ``cnnedge demo``)."""
    mods = _code()
    graph = {m: _imports(p, m, mods) for m, p in mods.items()}
    demo = set(_demo())
    assert graph["edge_demo.app"] & set(_library())  # the check sees imports across the two
    wrong = [
        f"{m} -> {n}" for m in _library() if not m.startswith("cnnedge.cli") for n in sorted(graph[m] & demo)
    ]
    wrong += [
        f"{m} -> {n}"
        for m in demo
        if m != "edge_demo.__main__"
        for n in sorted(graph[m])
        if n.startswith("cnnedge.cli")
    ]
    assert not wrong, "\n".join(wrong)


def test_import_cycle_check_can_fail(tmp_path, monkeypatch):
    """The checker sees a cycle made of function-level imports."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from cnnedge import b\n")
    b.write_text("import cnnedge.a\n")
    mods = {"cnnedge.a": a, "cnnedge.b": b}
    assert _imports(a, "cnnedge.a", mods) == {"cnnedge.b"}
    assert _imports(b, "cnnedge.b", mods) == {"cnnedge.a"}


@pytest.mark.parametrize("name", sorted(_code()))
def test_library_files_are_short(name):
    lines = len(_code()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines (split it by what its parts do)"


MAX_FUNCTION_LINES = 80  # a function's code, its docstring aside: one screen to read
LONG_FUNCTIONS: dict[str, str] = {}  # "module:function" -> why it may be longer (none today)


def _functions(path: Path):
    """(name, code lines) of every function and method in ``path``, the docstring aside."""
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = n.end_lineno - n.lineno + 1
            doc = n.body[0]
            if (
                isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)
            ):
                lines -= doc.end_lineno - doc.lineno + 1
            yield n.name, lines


@pytest.mark.parametrize("name", sorted(_code()))
def test_functions_fit_on_a_screen(name):
    long = [
        f"{name}:{f} ({n} lines)"
        for f, n in _functions(_code()[name])
        if n > MAX_FUNCTION_LINES and f"{name}:{f}" not in LONG_FUNCTIONS
    ]
    assert not long, f"over {MAX_FUNCTION_LINES} lines (split by what the parts do): {long}"


def test_function_length_check_can_fail(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    f = tmp_path / "m.py"
    f.write_text(f'def f():\n    """Doc\n    lines."""\n{body}\n')
    assert list(_functions(f)) == [("f", MAX_FUNCTION_LINES + 2)]


MANY_ARGUMENTS = 8  # from here on a reader needs each argument's meaning spelled out


def _undocumented(path: Path):
    """Public module-level functions of ``path`` with many parameters whose docstring lacks a
    Google-style ``Args:`` section naming every one of them."""
    for n in ast.parse(path.read_text()).body:
        if not isinstance(n, ast.FunctionDef) or n.name.startswith("_"):
            continue
        names = [a.arg for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs]
        if len(names) < MANY_ARGUMENTS:
            continue
        doc = ast.get_docstring(n) or ""
        args = doc.split("Args:", 1)[1].split("Returns:", 1)[0] if "Args:" in doc else ""
        named = {x.strip() for line in re.findall(r"^\s+([\w, ]+):", args, re.M) for x in line.split(",")}
        missing = [a for a in names if a not in named]
        if missing:
            yield f"{n.name} ({', '.join(missing)})"


@pytest.mark.parametrize("name", sorted(m for m in _code() if not m.startswith("cnnedge.cli")))
def test_public_functions_document_their_arguments(name):
    """Google style, one way everywhere; the CLI's commands are documented by their options'
    help texts instead (their docstrings are the commands' help)."""
    bad = list(_undocumented(_code()[name]))
    assert not bad, f"{name}: add an Args: section naming every parameter: {bad}"


def test_argument_check_can_fail(tmp_path):
    f = tmp_path / "m.py"
    params = ", ".join(f"a{i}" for i in range(MANY_ARGUMENTS))
    f.write_text(f'def f({params}):\n    """Doc.\n\n    Args:\n        a0: x.\n    """\n')
    assert list(_undocumented(f)) == [f"f ({', '.join(f'a{i}' for i in range(1, MANY_ARGUMENTS))})"]


RUN_FILES = {
    *Run.MODELS.values(),
    Run.RECIPE,
    Run.STATE,
    Run.ENV,
    Run.LABELS,
    Run.SUMMARY,
    Run.METRICS,
    Run.QAT_METRICS,
    Run.CURVES,
    Run.CONFUSION,
    Run.VERIFY_JSON,
    Run.VERIFY_MD,
    *Run.BENCH,
}


def _code_strings(path: Path):
    """String constants of a module that are not docstrings (help texts count: they are code)."""
    tree = ast.parse(path.read_text())
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            yield n.lineno, n.value


def test_run_file_names_are_typed_only_in_run():
    pattern = re.compile("|".join(re.escape(f) for f in sorted(RUN_FILES)))
    found = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in _code().values()
        if path != LIB / "run.py"
        for line, text in _code_strings(path)
        if pattern.search(text)
    ]
    assert not found, "\n".join(found)


# ----------------------------------------------------------------- artifact table and runtimes
@pytest.mark.parametrize("row", artifacts.TABLE, ids=lambda a: a.key)
def test_artifact_rows_are_complete(row):
    from cnnedge.export import WRITERS

    assert row.runtimes and all(r in runtime.list_runtimes() for r in row.runtimes)
    if row.filename:  # exported: a writer, a metadata reader, the suffix in the name
        assert row.format in WRITERS and row.filename.endswith(row.suffix)
        assert artifacts.lookup(row.filename) == row
        assert row.format in artifacts.METADATA_WHERE
    assert runtime.default_runtime(f"x{row.suffix}") in row.runtimes


@pytest.mark.parametrize("name", runtime.list_runtimes())
def test_every_runtime_runs_a_table_row_and_reports_status(name):
    assert any(name in a.runtimes for a in artifacts.TABLE), name
    ok, why = runtime.runtime_status(name)
    assert isinstance(ok, bool) and why and runtime.runtime_help(name)
    assert runtime.modes(name)


def test_formats_and_runtimes_commands(capsys):
    from cnnedge.cli import main

    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    for a in artifacts.exported():
        assert a.filename in out
    assert main(["runtimes"]) == 0
    out = capsys.readouterr().out
    for name in runtime.list_runtimes():
        assert name in out
    assert (
        "pip install onnxruntime-gpu" in out.replace("\n", " ").replace("│", " ")
        or runtime.runtime_status("onnxruntime-cuda")[0]
    )


def test_the_code_keeps_one_style():
    """The style is ``ruff format`` plus ruff's linter with pyproject's [tool.ruff] rules
    (pycodestyle, pyflakes, isort; 110 columns) over the library, tests, recipes, the demo and
    the docs' scripts, checked here so CI holds it (``make format`` applies it)."""
    import shutil

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    where = ["toolkit", "tests", "recipes", "edge_demo", "docs"]
    fmt = subprocess.run(
        [ruff, "format", "--check", "--no-cache", *where], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, "not formatted (make format):\n" + fmt.stdout[-3000:]
    lint = subprocess.run([ruff, "check", "--no-cache", *where], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]


# ------------------------------------------------------------------------------------ docs
def test_cli_reference_is_current():
    """docs/cli.md is generated: regenerate with `python -m cnnedge.cli.docs > docs/cli.md`."""
    out = subprocess.run(
        [sys.executable, "-m", "cnnedge.cli.docs"], capture_output=True, text=True, check=True
    ).stdout
    assert (REPO / "docs" / "cli.md").read_text() == out


def test_readme_is_short_and_docs_name_no_machine():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150
    nickname = re.compile(r"\bVM [A-Z]\b|\bsessions? [0-9]|\blent\b|scratch (PyTorch|replica)")
    for path in [REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md")]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            assert not nickname.search(line), f"{path.name}:{i}: {line}"
