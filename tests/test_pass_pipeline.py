"""Pipelines as text (`-p normalize,init{seed=3}`): parsing, option types from the passes' type
hints, and every error message; the pass manager's trace."""

import dataclasses

import numpy as np
import pytest
from pccompile.ir import ArgumentError
from pccompile.passes import (
    InitParams,
    Normalize,
    Pass,
    PassContext,
    PassManager,
    Verify,
    parse_pipeline,
    register,
    registered,
)

import pccompile as pc


def test_names_options_and_spaces():
    got = parse_pipeline(" normalize , init{seed=3}, verify{require_params=yes} ")
    assert got == [Normalize(), InitParams(seed=3), Verify(require_params=True)]
    assert [str(p) for p in got] == ["normalize", "init{seed=3}", "verify{require_params=True}"]
    assert parse_pipeline("") == []


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "distil",
            r"unknown pass 'distil'; known passes: collapse, condition, grow, init, integrate, normalize, prune, trim, vectorize, verify",
        ),
        ("init{colour=1}", r"pass 'init' has no option 'colour'; options: seed"),
        ("init{seed}", r"pass 'init' has no option 'seed'"),
        ("normalize{x=1}", r"pass 'normalize' has no option 'x'; options: none"),
        ("init{seed=1.5}", r"pass 'init': option 'seed' expects an integer in 0..2\^63-1, got '1.5'"),
        ("verify{require_params=maybe}", r"option 'require_params' expects true or false \(1 or 0\), got 'maybe'"),
        ("init,,verify", r"cannot read from column 6; expected NAME or NAME\{opt=value,...\}"),
        ("3d", r"cannot read from column 1"),
    ],
)
def test_pipeline_errors_name_what_was_expected(text, match):
    with pytest.raises(ArgumentError, match=match):
        parse_pipeline(text)


@dataclasses.dataclass(frozen=True)
class _Scale(Pass):
    """A test pass whose options cover every convertible type (registered only in its test)."""

    name = "test-scale"
    factor: float = 1.0
    times: int = 1
    label: str = ""
    loud: bool = False

    def run(self, circuit, ctx=None):
        return circuit


def test_option_types_come_from_the_type_hints(monkeypatch):
    import pccompile.passes.base as base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register(_Scale)
    (p,) = parse_pipeline("test-scale{factor=2.5,times=3,label=intact,loud=on}")
    assert p == _Scale(factor=2.5, times=3, label="intact", loud=True)
    assert isinstance(p.factor, float) and isinstance(p.times, int)
    with pytest.raises(ArgumentError, match="option 'factor' expects a finite number, got 'big'"):
        parse_pipeline("test-scale{factor=big}")
    assert "test-scale" in registered()


def test_the_pass_manager_traces_every_step():
    seen = []
    circuit = pc.parse("var a : binary\nl[2] = bernoulli(a)\nroot = sum(l)\n")
    PassManager([Normalize(), Verify()]).run(circuit, lambda p, before, after: seen.append(str(p)))
    assert seen == ["normalize", "verify{require_params=False}"]


@dataclasses.dataclass(frozen=True)
class _NeedsScores(Pass):
    name = "test-needs-scores"

    def run(self, circuit, ctx=None):
        scores = (ctx or PassContext()).require("edge_flows", self.name)
        assert set(scores) <= set(circuit.nodes)
        return circuit


def test_analyses_reach_a_pass_through_the_context_not_the_circuit_or_its_options():
    circuit = pc.parse("var a : binary\nl[2] = bernoulli(a)\nroot = sum(l)\n")
    flows = {circuit.root: np.ones((1, 2))}
    out = PassManager([_NeedsScores()]).run(circuit, ctx=PassContext({"edge_flows": flows}))
    assert out is circuit and "edge_flows" not in out.meta and str(_NeedsScores()) == "test-needs-scores"
    with pytest.raises(ArgumentError, match=r"pass 'test-needs-scores' needs the 'edge_flows' analysis"):
        PassManager([_NeedsScores()]).run(circuit)
