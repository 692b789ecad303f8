"""The fuzz suite: mutated .pc text, networkx graphs and .pcz files (tests/fuzzing.py), and every
option, metadata field and environment variable given awkward values (tests/fuzz_setups.py),
must each end in success or a PCError, and what compiles must compute the right thing.

CI runs a few hundred cases per drawn kind and every enumerated case; `pytest tests/test_fuzz.py
--fuzz 10000` runs a long one."""

import fuzz_setups
import fuzzing
import pytest

CI_CASES = {"dsl": 300, "networkx": 200, "pcz": 150, "cli": 100, "options": 0, "meta": 0, "env": 0}


@pytest.mark.parametrize("kind", sorted(CI_CASES))
def test_fuzzed_inputs_end_in_success_or_a_pcerror(kind, request, tmp_path):
    n = request.config.getoption("--fuzz") or CI_CASES[kind]
    counts, bad = fuzzing.run_cases(kind, n, seed=1, tmp=tmp_path)
    report = "\n".join(f"{o.case}: {o.kind}: {o.detail}" for o in bad[:10])
    assert not bad, f"{len(bad)} of {n} cases ended otherwise ({dict(counts)}):\n{report}"
    # the mutators must exercise both outcomes, or the suite checks little
    assert counts["ok"] > 0 and counts["pcerror"] > 0, dict(counts)


def test_the_fuzzer_catches_a_miscompile(monkeypatch, tmp_path):
    """With the front-end check and vectorize's guard switched off, the products over one variable
    that the mutator makes are miscompiled, and the brute-force comparison reports it."""
    import pccompile.passes.vectorize as vectorize

    import pccompile.nx

    monkeypatch.setattr(pccompile.nx, "verify", lambda circuit: None)
    monkeypatch.setattr(vectorize, "check_distinct_children", lambda node, vecs: None)
    counts, bad = fuzzing.run_cases("networkx", 120, seed=1, tmp=tmp_path)
    assert any(o.kind == "AssertionError" and "miscompiled" in o.detail for o in bad), dict(counts)


def test_the_enumerated_kinds_cover_every_option_and_variable():
    """Every option of every pass and learner, every template argument, every numeric flag of
    the commands and every environment variable the project declares meets every value."""
    from pccompile.ir.env import VARIABLES
    from pccompile.ir.options import option_types
    from pccompile.passes import registered

    from pccompile.dsl.templates import TEMPLATES
    from pccompile.learn import CompressOptions, PruneGrowOptions
    from pccompile.lvd import LVDOptions

    labels = [label for label, _ in fuzz_setups.option_cases()]
    want = sum(len(option_types(c)) for c in registered().values())
    want += sum(len(option_types(c)) for c in (PruneGrowOptions, CompressOptions, LVDOptions))
    want += sum(len(t.args) for t in TEMPLATES.values()) + len(fuzz_setups.numeric_flags())
    assert len(labels) == want * len(fuzz_setups.AWKWARD) and len(set(labels)) == len(labels)
    assert {"--seed", "--epochs", "--samples", "-n", "--entropy-reg"} <= {f for _, f in fuzz_setups.numeric_flags()}
    assert set(fuzz_setups.ENV_READERS) == set(VARIABLES)


def test_the_setup_fuzzer_catches_an_unchecked_option(monkeypatch, tmp_path):
    """With grow's declared range on `factor` removed, the option fuzzer finds the factors that
    reach the passes unchecked (a factor of 0 makes an empty circuit and a raw error)."""
    import typing

    import pccompile.passes.grow as grow

    hints = typing.get_type_hints(grow.Grow, include_extras=True)
    monkeypatch.setattr(grow.Grow, "__annotations__", dict(grow.Grow.__annotations__, factor="int"))
    assert hints["factor"] != typing.get_type_hints(grow.Grow, include_extras=True)["factor"]
    monkeypatch.setattr(fuzz_setups, "option_cases", lambda: iter([("grow 0", ("pass", "grow", "factor", "0"))]))
    counts, bad = fuzzing.run_cases("options", 0, seed=1, tmp=tmp_path)
    assert bad, dict(counts)
