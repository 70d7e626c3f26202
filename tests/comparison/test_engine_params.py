"""The engine's parameters are one frozen value passed in (issue 28 item 6).

`RegistrationEngine(params=EngineParams)`: a changed value changes the result, two engines with other
values do not interfere, the engine keeps nothing between `compare` calls, and every function of the
engine's modules that takes `params` is handed it (a forgotten hand-over would silently read the
shipped defaults, which no behavioural test of one changed value can catch everywhere).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from comparison import CompareContext, RegistrationEngine, load_image, synthetic
from comparison import thresholds
from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from priorwatch.vocabulary import Change, FindingType

ENGINE_MODULES = ("registration", "signs", "typing_rules", "fluid", "coarse_pose", "nonrigid", "pleural_line")
ROOT = Path(__file__).resolve().parents[2] / "comparison"


def _pair(spec: synthetic.PairSpec):
    return load_image(spec.current_paths[0]).pixels, load_image(spec.prior_paths[0]).pixels


def _claims(out) -> list[tuple[str, str, str]]:
    return [(f.finding.value, f.side.value, f.change.value) for f in out.result.findings if f.change != Change.stable]


@pytest.fixture(scope="module")
def nodule_pair(demo: list[synthetic.PairSpec]):
    spec = demo[0]  # a new right upper nodule
    assert (spec.lesion, spec.change) == (FindingType.nodule, Change.new)
    return _pair(spec)


def test_params_are_frozen_and_the_module_cannot_be_overwritten() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_PARAMS.READER_CHANGE_P = 0.9  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        thresholds.READER_CHANGE_P = 0.9  # a tuner overwriting a constant fails loudly
    assert EngineParams() == DEFAULT_PARAMS
    assert RegistrationEngine(use_reader=False).params is DEFAULT_PARAMS


@pytest.mark.parametrize("use_reader,change", [(False, {"Z_THRESHOLD": 1e6}), (True, {"READER_CHANGE_P": 1.01})],
                         ids=["rules: no region passes", "reader: no lung passes"])
def test_a_changed_value_changes_the_result(nodule_pair, use_reader: bool, change: dict) -> None:
    cur, pri = nodule_pair
    ctx = CompareContext(interval_days=30)
    shipped = RegistrationEngine(use_reader=use_reader).compare(cur, pri, ctx)
    other = RegistrationEngine(use_reader=use_reader, params=dataclasses.replace(DEFAULT_PARAMS, **change)).compare(cur, pri, ctx)
    round_new_right = [c for c in _claims(shipped) if c[0] in ("nodule", "mass") and c[1:] == ("right", "new")]
    assert len(round_new_right) == 1, _claims(shipped)  # the drawn lesion: a new right round opacity
    assert _claims(other) == [], _claims(other)


def test_two_engines_do_not_interfere_and_keep_nothing_between_calls(nodule_pair) -> None:
    cur, pri = nodule_pair
    ctx = CompareContext(interval_days=30)
    a = RegistrationEngine(use_reader=False)
    b = RegistrationEngine(use_reader=False, params=dataclasses.replace(DEFAULT_PARAMS, Z_THRESHOLD=1e6))
    state = dict(vars(a))
    first = a.compare(cur, pri, ctx).result.model_dump()
    b.compare(cur, pri, ctx)  # the other engine runs in between
    again = a.compare(cur, pri, ctx).result.model_dump()
    assert again == first
    assert vars(a) == state  # nothing of a call is kept on the engine
    assert DEFAULT_PARAMS == EngineParams()


def test_trace_is_returned_per_call(nodule_pair) -> None:
    """What modeldev read from `engine.last_*` comes back with each answer instead."""
    cur, pri = nodule_pair
    out = RegistrationEngine().compare(cur, pri, CompareContext(interval_days=30))
    assert set(out.trace) == {"features", "rules", "reads", "fluid"}
    assert [r.side for r in out.trace["reads"]] == ["right", "left"]
    assert out.trace["features"] and set(out.trace["fluid"]) == {"right", "left"}


def _functions_taking_params(trees: dict[str, ast.Module]) -> set[str]:
    names = set()
    for tree in trees.values():
        for n in ast.walk(tree):
            if isinstance(n, ast.FunctionDef) and any(a.arg == "params" for a in n.args.args + n.args.kwonlyargs):
                names.add(n.name)
    return names


def test_every_call_hands_the_params_on() -> None:
    trees = {m: ast.parse((ROOT / f"{m}.py").read_text()) for m in ENGINE_MODULES}
    takes = _functions_taking_params(trees)
    assert {"measure", "describe", "reconcile", "new_fluid_height", "search_pose", "fit_bspline"} <= takes
    missed = []
    for m, tree in trees.items():
        for n in ast.walk(tree):
            if isinstance(n, ast.Call):
                name = n.func.id if isinstance(n.func, ast.Name) else None
                if name in takes and not any(k.arg == "params" for k in n.keywords):
                    missed.append(f"{m}.py:{n.lineno} {name}")
    assert missed == []
