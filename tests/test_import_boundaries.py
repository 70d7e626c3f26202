"""The rooms of DESIGN.md ("Layout": who may import whom), checked on every module's imports.

An `ast` walk rather than import-linter, because the rules are about *names* as well as
modules: `benchmarks` and `modeldev` may use only the engine's public API (the names in
`comparison.__all__`, `comparison.vlm.__all__`, and the public submodules), and import-linter
contracts see modules only; its `forbidden` contracts are also deny-lists, where a new engine
module would slip past the worker's rule, while these are allow-lists. It needs no extra
dependency and parses the ~145 files of the rooms in about a second.

What each room may import is `ALLOWED`; `workers` may import from `comparison` only the
modules in `WORKER_FACING` (the contract, the Triton client and server, image preparation,
the VLM client side), and the module-level import closure of the worker must stay inside
`WORKER_REACHABLE` (importing `a.b.c` runs `a/__init__` and `a/b/__init__`, counted here).
Known violations not fixed yet are in `EXCEPTIONS`, each with its reason; an exception that no
longer occurs fails too, so the list only shrinks. The runtime side (no torch or SimpleITK in a
worker process) is `test_worker_import_loads_no_engine` below.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("priorwatch", "dicom_node", "comparison", "workers", "monitoring", "dashboard", "benchmarks", "modeldev")

# room -> the other rooms it may import (itself always). "comparison:public" = only the engine's
# public names; "comparison:worker" = only the modules in WORKER_FACING.
ALLOWED: dict[str, set[str]] = {
    "priorwatch": set(),
    "dicom_node": {"priorwatch"},
    "comparison": {"priorwatch"},
    "monitoring": {"priorwatch"},
    "dashboard": {"priorwatch", "monitoring"},
    "workers": {"priorwatch", "dicom_node", "comparison:worker"},
    "benchmarks": {"priorwatch", "dicom_node", "workers", "monitoring", "dashboard", "modeldev", "comparison:public"},
    # modeldev (generators, training) may read the benchmarks' generators (the train split of
    # cxrpairs); that generator's own independence from the engine is tests/benchmarks' check.
    "modeldev": {"priorwatch", "benchmarks", "comparison:public"},
}

# What the worker may import from the engine room: it calls the engines through Triton.
WORKER_FACING = {
    "comparison.contract",  # CompareContext, ComparisonOutput, EngineError, EngineUnavailable
    "comparison.history",  # compare_history: one comparison per prior of the history, through any comparator
    "comparison.triton_client",  # TritonComparator (the registration engine over gRPC)
    "comparison.triton_server",  # LocalTriton: the embedded default starts Triton
    "comparison.preprocess",  # load_image: pixels are prepared in the worker, then sent
    "comparison.vlm.client",  # VlmTritonClient, VlmComparator: the VLM over gRPC, guard, fallback
    "comparison.vlm.serving",  # vlm_env: the VLM's settings for the Triton it starts
}
# Where the worker's module-level imports may lead inside `comparison`: the above, the package
# __init__ files they run, and what the VLM client runs in the worker (the guard, the parser).
WORKER_REACHABLE = WORKER_FACING | {
    "comparison",
    "comparison.draft",
    "comparison.guard",
    "comparison.vlm",
    "comparison.vlm.adapters",
    "comparison.vlm.engine",  # its torch import is inside the function Triton runs
    "comparison.vlm.parse",
    "comparison.vlm.tiny",  # likewise torch inside build_tiny_llava
    "comparison.thresholds",  # constants only (no imports); preprocess reads its view and orientation names
}
# Public modules of the engine beside the names in comparison.__all__ and comparison.vlm.__all__
# (DESIGN.md and comparison's docstring); the rest of each package is private to it.
# The last four are public for model development and evaluation (comparison's docstring; issue 28):
# thresholds (every tunable, set by tuning runs), calibration (the Platt fit), benchmark (the engine's
# own generator's table, `priorwatch benchmark`) and mscxrt (the MS-CXR-T label scorer).
PUBLIC_SUBMODULES = {"comparison.contract", "comparison.synthetic", "comparison.thresholds", "comparison.calibration",
                     "comparison.benchmark", "comparison.mscxrt"}

# (importing module, imported module) pairs allowed for now, each with why (any name from that
# module): a new import of another internal module fails.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # `priorwatch demo` (a CLI command, not the worker process) makes its synthetic studies.
    ("workers.demo", "comparison.synthetic"): "demo data; comparison.synthetic is public, but not worker-facing",
    # A benchmark that starts the VLM's Triton itself (issue 31: move to the public API).
    ("benchmarks.triton_overhead", "comparison.vlm.serving"): "MODEL_REPOSITORY, pytriton_root, server_env",
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name of the importing file
    module: str  # the imported module (resolved: relative imports made absolute)
    name: str | None  # for `from module import name` when name is not itself a module
    line: int
    top_level: bool  # at module level and not under `if TYPE_CHECKING:` (runs at import time)
    typing_only: bool = False  # under `if TYPE_CHECKING:`: never runs


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str, root: Path = ROOT) -> bool:
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, root: Path = ROOT) -> Iterator[Import]:
    """Every import statement in one file, with whether it runs when the module is imported."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def walk(node: ast.AST, top: bool, typing: bool = False) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(me, alias.name, None, child.lineno, top, typing)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    if alias.name != "*" and is_module(sub, root):
                        yield Import(me, sub, None, child.lineno, top, typing)
                    else:
                        yield Import(me, base, alias.name, child.lineno, top, typing)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, False, typing)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from walk(child, False, True)
            else:
                yield from walk(child, top, typing)

    yield from walk(tree, True)


@functools.cache
def all_imports() -> tuple[Import, ...]:
    """Every import in every room (walked once per test session)."""
    out: list[Import] = []
    for room in ROOMS:
        if (ROOT / room).is_dir():
            for path in sorted((ROOT / room).rglob("*.py")):
                out.extend(imports_of(path))
    return tuple(out)


@functools.cache
def declared_all(module: str) -> frozenset[str]:
    """The names in a module's literal `__all__` (read, not imported: no engine is loaded)."""
    base = ROOT.joinpath(*module.split("."))
    path = base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return frozenset(ast.literal_eval(node.value))
    return frozenset()


def room_of(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in ROOMS else None


def is_public_engine_name(imp: Import) -> bool:
    if imp.module in ("comparison", "comparison.vlm"):  # the packages: their __all__ (or the bare package)
        return imp.name is None or imp.name in declared_all(imp.module)
    return imp.module in PUBLIC_SUBMODULES and not (imp.name or "").startswith("_")


def violations(imports: Iterable[Import]) -> list[tuple[Import, str]]:
    """(import, rule broken) for every import that crosses rooms against ALLOWED."""
    bad: list[tuple[Import, str]] = []
    for imp in imports:
        src, dst = room_of(imp.importer), room_of(imp.module)
        if src is None or dst is None or src == dst:
            continue
        allowed = ALLOWED[src]
        if dst == "comparison" and "comparison:worker" in allowed:
            if imp.module not in WORKER_FACING:
                bad.append((imp, f"{src} may import from comparison only {sorted(WORKER_FACING)}"))
        elif dst == "comparison" and "comparison:public" in allowed:
            if not is_public_engine_name(imp):
                bad.append((imp, f"{src} may import only the engine's public names"))
        elif dst not in allowed:
            bad.append((imp, f"{src} may import only {sorted(allowed) or 'nothing of ours'}"))
    return bad


def key(imp: Import) -> tuple[str, str]:
    return imp.importer, imp.module


def describe(imp: Import, why: str) -> str:
    what = f"from {imp.module} import {imp.name}" if imp.name else f"import {imp.module}"
    return f"{imp.importer}:{imp.line}: {what}  ({why})"


def test_rooms_import_only_what_design_allows() -> None:
    found = violations(all_imports())
    new = [describe(imp, why) for imp, why in found if key(imp) not in EXCEPTIONS]
    assert new == [], "imports across rooms that DESIGN.md does not allow:\n" + "\n".join(new)


def test_exceptions_still_occur() -> None:
    """An exception whose import is gone is removed from the list, so the list only shrinks."""
    seen = {key(imp) for imp, _ in violations(all_imports())}
    assert sorted(set(EXCEPTIONS) - seen) == []


def test_worker_import_closure_stays_out_of_the_engine() -> None:
    """Module-level imports reachable from `workers` (package __init__ files included) reach
    only the worker-facing part of `comparison`: no registration engine, no reader."""
    by_module: dict[str, list[Import]] = {}
    for imp in all_imports():
        by_module.setdefault(imp.importer, []).append(imp)
    exempt = {importer for importer, _ in EXCEPTIONS if importer.startswith("workers.")}
    todo = [m for m in by_module if room_of(m) == "workers" and m not in exempt]
    seen: set[str] = set(todo)
    while todo:
        current = todo.pop()
        for imp in by_module.get(current, []):
            if not imp.top_level or room_of(imp.module) is None:
                continue
            parts = imp.module.split(".")
            for target in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                if target not in seen and is_module(target):
                    seen.add(target)
                    todo.append(target)
    engine = sorted(m for m in seen if room_of(m) == "comparison" and m not in WORKER_REACHABLE)
    assert engine == [], f"the worker's import-time closure reaches engine modules: {engine}"


def test_walker_resolves_every_import_form(tmp_path: Path) -> None:
    """Relative imports, `from package import submodule`, and what runs at import time are read
    right (else the rules above would check the wrong modules)."""
    for d in ("dicom_node/sub", "comparison", "workers"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "__init__.py").write_text("")
    (tmp_path / "comparison" / "synthetic.py").write_text("")
    src = tmp_path / "dicom_node" / "sub" / "x.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "from ..y import z\n"
                   "from comparison import synthetic, RegistrationEngine\n"
                   "import workers.pipeline as wp\n"
                   "if TYPE_CHECKING:\n    from workers import tasks\n"
                   "def f():\n    import priorwatch.db\n")
    found = [(i.importer, i.module, i.name, i.top_level) for i in imports_of(src, tmp_path)]
    assert found == [
        ("dicom_node.sub.x", "typing", "TYPE_CHECKING", True),
        ("dicom_node.sub.x", "dicom_node.y", "z", True),
        ("dicom_node.sub.x", "comparison.synthetic", None, True),
        ("dicom_node.sub.x", "comparison", "RegistrationEngine", True),
        ("dicom_node.sub.x", "workers.pipeline", None, True),
        ("dicom_node.sub.x", "workers", "tasks", False),
        ("dicom_node.sub.x", "priorwatch.db", None, False),
    ]


def test_rules_catch_forbidden_imports() -> None:
    """Each kind of rule flags its own case and passes an allowed neighbour."""
    cases = [Import("dicom_node.scp", "workers.pipeline", None, 1, True),  # edge imports a worker
             Import("dicom_node.scp", "priorwatch.settings", None, 1, True),
             Import("workers.pipeline", "comparison", "RegistrationEngine", 1, True),  # not via the contract
             Import("workers.pipeline", "comparison.contract", "CompareContext", 1, True),
             Import("benchmarks.x", "comparison.registration", "_match_tone", 1, False),  # engine internals
             Import("benchmarks.x", "comparison", "RegistrationEngine", 1, True),
             Import("dashboard.app", "workers.tasks", None, 1, True),
             Import("dashboard.app", "monitoring.metrics", None, 1, True),
             Import("priorwatch.cli", "monitoring", None, 1, False)]
    assert [key(imp) for imp, _ in violations(cases)] == [
        ("dicom_node.scp", "workers.pipeline"), ("workers.pipeline", "comparison"),
        ("benchmarks.x", "comparison.registration"), ("dashboard.app", "workers.tasks"),
        ("priorwatch.cli", "monitoring")]


def test_worker_import_loads_no_engine(tmp_path: Path) -> None:
    """A fresh interpreter importing the worker (the pipeline, the Celery app and its tasks, the
    runtime that starts Triton) loads neither torch nor SimpleITK nor scipy: the engines run inside
    Triton, the worker only sends arrays. One interpreter for all keeps the suite fast."""
    code = ("import sys, workers.pipeline, workers.app, workers.tasks, workers.runtime; "
            "print(sorted(m for m in ('torch', 'SimpleITK', 'scipy', 'comparison.registration', 'comparison.reader') "
            "if m in sys.modules))")
    env = {**os.environ, "PRIORWATCH_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# Celery's idiom: the app imports its tasks when it starts, the tasks import the app to register.
ALLOWED_CIRCLES = [["workers.app", "workers.tasks"]]


def import_circles(imports: Iterable[Import]) -> list[list[str]]:
    """Groups of our modules that import each other, directly or round a loop (strongly connected
    components of the import graph). Function-level imports count (they run); imports under
    `if TYPE_CHECKING:` do not."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if imp.typing_only or room_of(imp.module) is None or imp.module == imp.importer:
            continue
        edges.setdefault(imp.importer, set()).add(imp.module)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_circles_but_celerys() -> None:
    """Modules that import each other cannot be read or changed one at a time (issue 31); the
    only circle left is Celery's app <-> tasks."""
    assert import_circles(all_imports()) == ALLOWED_CIRCLES


def test_circle_finder_sees_loops_through_function_imports_not_type_only_ones() -> None:
    loop = [Import("monitoring.a", "monitoring.b", None, 1, True), Import("monitoring.b", "monitoring.c", None, 1, True),
            Import("monitoring.c", "monitoring.a", None, 9, False)]  # a function-level import closes it
    typed = [Import("comparison.x", "comparison.y", None, 1, True),
             Import("comparison.y", "comparison.x", None, 1, False, typing_only=True)]
    assert import_circles(loop + typed) == [["monitoring.a", "monitoring.b", "monitoring.c"]]
