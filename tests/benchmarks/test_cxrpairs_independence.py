"""The independent pair generator shares no code with what it evaluates (issue 11)."""

from __future__ import annotations

import ast
from pathlib import Path

import benchmarks.cxrpairs

PACKAGE = Path(benchmarks.cxrpairs.__file__).parent
FORBIDDEN = "comparison"


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        elif isinstance(node, ast.Call):
            fn = node.func
            fname = getattr(fn, "attr", None) or getattr(fn, "id", None)
            if fname in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names.append(str(node.args[0].value))
    return names


def test_no_generator_module_imports_comparison() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) >= 6, "the generator's modules were not found"
    offenders = {}
    for path in modules:
        names = _imported_modules(ast.parse(path.read_text(), filename=str(path)))
        bad = [n for n in names if n == FORBIDDEN or n.startswith(FORBIDDEN + ".")]
        if bad:
            offenders[path.name] = bad
    assert offenders == {}


def test_the_import_check_catches_every_import_form() -> None:
    for src in ("import comparison", "from comparison.synthetic import x", "import comparison.guard as g",
                "importlib.import_module('comparison.registration')"):
        names = _imported_modules(ast.parse(src))
        assert any(n.startswith(FORBIDDEN) for n in names), src
