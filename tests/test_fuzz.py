"""The fuzz suite: mutated .pc text, networkx graphs and .pcz files (tests/fuzzing.py) must each
end in success or a PCError, and what compiles must compute the right thing.

CI runs a few hundred cases per kind; `pytest tests/test_fuzz.py --fuzz 10000` runs a long one."""

import fuzzing
import pytest

CI_CASES = {"dsl": 300, "networkx": 200, "pcz": 150, "cli": 100}


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
