"""The package's shape: no import cycles, and a numeric core that needs no files or CLI.

The imports are read from the source with :mod:`ast`, so the checks see what
each module asks for (not what happens to be loaded already).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "upconv"

#: Arrays in, arrays out: these modules must not reach any file, report-writing or CLI code.
NUMERIC_CORE = ("polyphase", "interpolate", "transpose", "kernels", "fit", "metrics",
                "methods", "samples", "colour", "options", "degrade")
#: The file and command-line layers.
OUTER_LAYERS = ("fileio", "storage", "images", "npy", "png16", "kernel_files", "checkpoints",
                "pipeline", "training", "reporting", "render", "pictures", "html_report", "batch",
                "cluster", "tiles", "stopping", "cli")
#: Deferred (in-function) imports that close a cycle on purpose, with the reason.
ALLOWED_DEFERRED = {
    # Kernel.load / Kernel.save are conveniences of the public API; the formats live in
    # the file layer, which is loaded only when a kernel file is used.
    ("upconv.kernels", "upconv.kernel_files"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str], deferred: bool) -> set[str]:
    """The upconv modules a file imports: at module level, or (``deferred``) anywhere."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(
        ".")[0]
    nodes = ast.walk(tree) if deferred else iter(tree.body)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    return found


def graph(deferred: bool) -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(path, known, deferred) - {name} for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's first sighting, by depth-first search."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_the_walker_sees_relative_and_deferred_imports():
    edges = graph(deferred=True)
    assert "upconv.kernels" in edges["upconv.scaling"]
    assert "upconv.cli.common" in edges["upconv.cli.scale"]
    assert "upconv.kernel_files" in edges["upconv.kernels"]  # inside Kernel.load
    assert "upconv.kernel_files" not in graph(deferred=False)["upconv.kernels"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert closure("a", {"a": {"b"}, "b": {"c"}}) == {"b", "c"}


def test_no_import_cycles_at_module_level():
    assert cycles(graph(deferred=False)) == []


def test_no_import_cycles_even_through_deferred_imports():
    edges = graph(deferred=True)
    for source, target in ALLOWED_DEFERRED:
        edges[source].discard(target)
    assert cycles(edges) == []


def closure(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize("core", [m for m in NUMERIC_CORE if (PACKAGE / f"{m}.py").exists()])
def test_the_numeric_core_imports_no_file_or_cli_code(core):
    edges = graph(deferred=False)
    reached = closure(f"upconv.{core}", edges)
    outer = {f"upconv.{m}" for m in OUTER_LAYERS} | {m for m in edges
                                                      if m.startswith("upconv.cli.")}
    assert not reached & outer, f"upconv.{core} reaches {sorted(reached & outer)}"
    source = (PACKAGE / f"{core}.py").read_text()
    for library in ("click", "rich"):
        assert f"import {library}" not in source and f"from {library}" not in source


def test_command_modules_import_no_private_names_from_each_other():
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if path.name != "__init__.py" and isinstance(node, ast.ImportFrom) \
                    and node.level == 1 and node.module not in (None, "common"):
                raise AssertionError(f"{path.name} imports from the command module "
                                     f".{node.module}")
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names
                           if a.name.startswith("_") and not a.name.endswith("__")]
                assert not private, f"{path.name} imports private names {private}"


def test_a_default_scale_job_never_imports_scipy(tmp_path):
    """Importing scipy.ndimage or scipy.fft costs a quarter of a second: more than the job."""
    import subprocess
    import sys

    from PIL import Image

    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "in.png")
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "in.jpg")
    code = (
        "import sys\n"
        "from upconv.pipeline import ScaleSettings, scale_file\n"
        "from upconv.methods import Method\n"
        f"for name, method in [('in.png', 'bicubic'), ('in.jpg', 'bilinear'),"
        f" ('in.png', 'transpose'), ('in.png', 'lanczos'), ('in.png', 'nearest')]:\n"
        f"    scale_file(r'{tmp_path}/' + name, r'{tmp_path}/out_' + method + '.png',\n"
        "               ScaleSettings(method=Method(method), factor=(2.0, 2.0)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_version_and_help_load_no_numeric_or_console_library(args):
    """Start-up: ``upconv --version`` and ``--help`` import neither numpy, Pillow, scipy
    nor rich (issue: at most 150 ms; bench/bench_cli.py measures the time)."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "from upconv.cli import run\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    status = run({args!r})\n"
            "heavy = {'numpy', 'PIL', 'scipy', 'rich', 'imagecodecs'}\n"
            "print(status, sorted({m.split('.')[0] for m in sys.modules} & heavy))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "0 []", done.stdout + done.stderr


def test_the_lazy_command_list_says_what_each_command_says():
    from upconv.cli import COMMANDS, main

    for name, (_, _, short) in COMMANDS.items():
        command = main.get_command(None, name)
        assert command.name == name
        assert command.get_short_help_str(limit=1000) == short
