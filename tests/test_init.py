"""Parameters the source leaves out: drawn by the runtime (default) or by the `init` pass."""

import numpy as np
import torch

import pccompile as pc

SRC = """var a : binary
var b : categorical(4)
var h : real
la[3] = bernoulli(a)
lb[3] = categorical(b, probs=[[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
lh[3] = gaussian(h)
p = product(la, lb, lh)
s[2] = sum(p)
root = sum(s)
"""


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_same_seed_same_parameters_other_seed_different():
    a, b, c = pc.compile(SRC, seed=3), pc.compile(SRC, seed=3), pc.compile(SRC, seed=4)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["sum_logits"], sc["sum_logits"])


def test_drawn_parameters_follow_the_documented_distributions_and_given_ones_are_kept():
    circuit = pc.compile(SRC, seed=0, dtype=torch.float64).to_circuit()
    for n in circuit.nodes.values():
        if n.kind == "product":
            continue
        p = circuit.params[n.id]
        if n.kind == "sum":
            w = np.asarray(p["weights"], np.float64)
            k = w.shape[1]
            assert np.all(w >= 0.6 / (1.4 * k) - 1e-6) and np.all(w <= 1.4 / (0.6 * k) + 1e-6)
        elif n.name == "la":
            assert np.all((p["p"] >= 0.2 - 1e-6) & (p["p"] <= 0.8 + 1e-6))
        elif n.name == "lh":
            np.testing.assert_allclose(p["std"], 1.0)
        elif n.name == "lb":  # given in the source: kept exactly
            np.testing.assert_allclose(p["probs"], [[0.1, 0.2, 0.3, 0.4], [0.25] * 4, [0.7, 0.1, 0.1, 0.1]], rtol=1e-6)


def test_user_passes_see_initialised_parameters():
    seen = []

    from pccompile.passes import Pass

    class Spy(Pass):
        name = "spy"

        def run(self, circuit):
            seen.append(all(i in circuit.params for i, n in circuit.nodes.items() if n.kind != "product"))
            return circuit

    report = pc.CompileReport()
    pc.compile(SRC, passes=[Spy()], report=report)
    assert seen == [True]
    assert report.passes[:3] == ["vectorize", "normalize", "init{seed=0}"]
