"""Closed-form MLE on completed data (pccompile.lvd.counting): equals counting by hand, loop by
loop, for every input family; equals EM run to convergence with the latents clamped by indicator
inputs (the ordinary engine, a different code path); and recovers a known circuit's parameters
from its own samples with their latents, within a tolerance set by the sample size."""

import numpy as np
import pytest
import torch
from pccompile.ir import Bernoulli, Binomial, Categorical, Domain, Gaussian, StructureError, Variable

import pccompile as pc
from pccompile import builder as b
from pccompile.learn.em import em_step
from pccompile.lvd import fit_completed, region_map

VARS = [Variable("x0", Domain(3)), Variable("x1", Domain(2)), Variable("x2", Domain(5)), Variable("x3", Domain(None))]


def _tree(indicators: bool = False):
    """A three-latent tree: Z_a (3 states) over x0, with messages to Z_b (2 states: x1 and x3)
    and Z_c (2 states: x2, binomial(4)). `indicators`: each latent also times a one-hot input over
    a variable z_a, z_b, z_c (4, 5, 6), which clamps it to the data's value."""
    ind = {}
    if indicators:
        for var, name, k in [(4, "a", 3), (5, "b", 2), (6, "c", 2)]:
            ind[name] = [b.inputs(var, k, Categorical(k), name=f"ind_{name}", probs=np.eye(k))]
    zb = b.multiply(b.inputs(1, 2, Bernoulli(), name="in1"), b.inputs(3, 2, Gaussian(), name="in3"), *ind.get("b", []))
    zc = b.multiply(b.inputs(2, 2, Binomial(4), name="in2"), *ind.get("c", [])) if indicators else None
    zc = zc if zc is not None else b.inputs(2, 2, Binomial(4), name="in2")
    m1, m2 = b.summate(zb, size=3, name="m1"), b.summate(zc, size=3, name="m2")
    za = b.multiply(b.inputs(0, 3, Categorical(3), name="in0"), m1, m2, *ind.get("a", []))
    root = b.summate(za, size=1, name="root")
    variables = VARS + ([Variable(f"z{n}", Domain(k)) for n, k in [("a", 3), ("b", 2), ("c", 2)]] if indicators else [])
    return pc.build(root, variables)


def _data(rng, n):
    z = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 2, n)], 1)
    x = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 5, n), rng.normal(size=n) + z[:, 1]], 1)
    return x, z


def _z_columns(circuit, z):
    """The assignments in region-map order: latent of in0 is z_a, of in1 is z_b, of in2 is z_c."""
    rmap = region_map(circuit)
    col = {}
    for name, j in [("in0", 0), ("in1", 1), ("in2", 2)]:
        col[rmap.inputs[circuit.by_name(name).id]] = j
    zz = np.zeros((z.shape[0], len(rmap.latents)), np.int64)
    for lat in rmap.latents:
        if lat.id in col:
            zz[:, lat.id] = z[:, col[lat.id]]
    return zz


def _params(model, names):
    c = model.to_circuit()
    return {n: {k: np.asarray(v, np.float64) for k, v in c.params[c.by_name(n).id].items()} for n in names}


def _by_hand(x, z, a, old):
    """Counting, one sample at a time, with the papers.md formulas."""
    za, zb, zc = z[:, 0], z[:, 1], z[:, 2]
    root, m1, m2 = np.zeros((1, 3)), np.zeros((3, 2)), np.zeros((3, 2))
    c0, c1, c2 = np.zeros((3, 3)), np.zeros((2, 2)), np.zeros((2, 2))  # c2: [trials, successes]
    g = np.zeros((2, 3))  # per Z_b state: n, sum x, sum x^2
    for i in range(len(x)):
        root[0, za[i]] += 1
        m1[za[i], zb[i]] += 1
        m2[za[i], zc[i]] += 1
        c0[za[i], int(x[i, 0])] += 1
        c1[zb[i], int(x[i, 1])] += 1
        c2[zc[i]] += [4, x[i, 2]]
        g[zb[i]] += [1, x[i, 3], x[i, 3] ** 2]

    def cat(n):
        return (n + a / n.shape[1]) / (n.sum(1, keepdims=True) + a)

    mean = (g[:, 1] + a * old["mean"]) / (g[:, 0] + a)
    ex2 = (g[:, 2] + a * (old["std"] ** 2 + old["mean"] ** 2)) / (g[:, 0] + a)
    return {
        "root": {"weights": cat(root)},
        "m1": {"weights": cat(m1)},
        "m2": {"weights": cat(m2)},
        "in0": {"probs": cat(c0)},
        "in1": {"p": cat(c1)[:, 1]},
        "in2": {"p": (c2[:, 1] + a / 2) / (c2[:, 0] + a)},
        "in3": {"mean": mean, "std": np.sqrt(np.maximum(ex2 - mean**2, 1e-6))},
    }


NAMES = ["root", "m1", "m2", "in0", "in1", "in2", "in3"]


@pytest.mark.parametrize("pseudocount", [0.0, 0.5])
def test_mle_equals_counting_by_hand_for_every_family(pseudocount, rng):
    x, z = _data(rng, 400)
    model = pc.compile(_tree(), dtype=torch.float64, seed=int(rng.integers(1 << 30)))
    old = _params(model, ["in3"])["in3"]
    fit_completed(model, x, _z_columns(model.circuit, z), pseudocount=pseudocount)
    want, got = _by_hand(x, z, pseudocount, old), _params(model, NAMES)
    for name in NAMES:
        for k in want[name]:
            np.testing.assert_allclose(got[name][k], want[name][k], rtol=1e-6, atol=1e-7, err_msg=f"{name}.{k}")


def test_mle_equals_em_to_convergence_with_the_latents_clamped(rng):
    x, z = _data(rng, 300)
    lvd = pc.compile(_tree(), dtype=torch.float64, seed=1)
    fit_completed(lvd, x, _z_columns(lvd.circuit, z), pseudocount=0.0)
    clamped = pc.compile(_tree(indicators=True), dtype=torch.float64, seed=2)
    xi, xr = clamped.encode(np.concatenate([x, z], 1))
    for _ in range(30):
        em_step(clamped, xi, xr, step_size=1.0, pseudocount=0.0)
    got, want = _params(lvd, NAMES), _params(clamped, NAMES)
    for name in NAMES:
        for k in want[name]:
            np.testing.assert_allclose(got[name][k], want[name][k], rtol=1e-6, atol=1e-7, err_msg=f"{name}.{k}")


def _mixture(indicators: bool, rng):
    """A root choosing between two latent vectors Z_1, Z_2 (2 states each, over x0 and x1): the
    choice no assignment names. Explicit parameters, so both compiled forms start alike. Both
    latents are assigned one variable z, so the clamped form's children keep one scope."""
    kids = []
    for j in range(2):
        ins = [
            b.inputs(0, 2, Categorical(3), name=f"a{j}", probs=rng.dirichlet(np.ones(3), 2)),
            b.inputs(1, 2, Categorical(2), name=f"b{j}", probs=rng.dirichlet(np.ones(2), 2)),
        ]
        if indicators:
            ins.append(b.inputs(2, 2, Categorical(2), name=f"ind{j}", probs=np.eye(2)))
        kids.append(b.multiply(*ins))
    root = b.summate(*kids, size=1, name="root", weights=rng.dirichlet(np.ones(4), 1))
    variables = [Variable("x0", Domain(3)), Variable("x1", Domain(2))]
    return pc.build(root, variables + ([Variable("z", Domain(2))] if indicators else []))


def test_a_choice_between_child_vectors_is_em_over_that_choice(rng):
    state = rng.bit_generator.state
    lvd = pc.compile(_mixture(False, rng), dtype=torch.float64)
    rng.bit_generator.state = state
    clamped = pc.compile(_mixture(True, rng), dtype=torch.float64)
    n = 200
    x = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n)], 1)
    z = rng.integers(0, 2, (n, 1))
    rmap = region_map(lvd.circuit)
    zz = np.zeros((n, len(rmap.latents)), np.int64)
    for j in range(2):
        zz[:, rmap.inputs[lvd.circuit.by_name(f"a{j}").id]] = z[:, 0]
    fit_completed(lvd, x, zz, pseudocount=0.0, rounds=25)
    xi, xr = clamped.encode(np.concatenate([x, z], 1))
    for _ in range(25):
        em_step(clamped, xi, xr, step_size=1.0, pseudocount=0.0)
    names = ["root", "a0", "a1", "b0", "b1"]
    got, want = _params(lvd, names), _params(clamped, names)
    for name in names:
        for k in want[name]:
            np.testing.assert_allclose(got[name][k], want[name][k], rtol=1e-6, atol=1e-7, err_msg=f"{name}.{k}")


def test_recovers_a_known_circuit_from_its_samples_and_latents():
    """Ancestral sampling of the tree with its latents recorded (written here, from the IR
    parameters); LVD with those latents lands within 5 standard errors of every parameter."""
    rng = np.random.default_rng(7)
    truth = pc.compile(_tree(), dtype=torch.float64, seed=3)
    p = _params(truth, NAMES)
    for name in ["root", "m1", "m2"]:
        p[name]["weights"] /= p[name]["weights"].sum(1, keepdims=True)
    p["in0"]["probs"] /= p["in0"]["probs"].sum(1, keepdims=True)
    n = 20000
    za = np.array([rng.choice(3, p=p["root"]["weights"][0]) for _ in range(n)])
    zb = np.array([rng.choice(2, p=p["m1"]["weights"][a]) for a in za])
    zc = np.array([rng.choice(2, p=p["m2"]["weights"][a]) for a in za])
    x = np.stack(
        [
            [rng.choice(3, p=p["in0"]["probs"][a]) for a in za],
            rng.random(n) < p["in1"]["p"][zb],
            rng.binomial(4, p["in2"]["p"][zc]),
            rng.normal(p["in3"]["mean"][zb], p["in3"]["std"][zb]),
        ],
        1,
    ).astype(np.float64)
    z = np.stack([za, zb, zc], 1)
    model = pc.compile(_tree(), dtype=torch.float64, seed=11)
    fit_completed(model, x, _z_columns(model.circuit, z), pseudocount=0.1)
    got = _params(model, NAMES)
    visits = {"root": np.full(1, n), "m1": np.bincount(za, minlength=3), "m2": np.bincount(za, minlength=3)}
    visits |= {"in0": visits["m1"], "in1": np.bincount(zb, minlength=2), "in3": np.bincount(zb, minlength=2)}
    visits["in2"] = 4 * np.bincount(zc, minlength=2)
    for name, key in [("root", "weights"), ("m1", "weights"), ("m2", "weights"), ("in0", "probs")]:
        q, se = p[name][key], np.sqrt(p[name][key] * (1 - p[name][key]) / visits[name][:, None])
        assert np.all(np.abs(got[name][key] - q) <= 5 * se + 1e-3), name
    for name in ["in1", "in2"]:
        q = p[name]["p"]
        assert np.all(np.abs(got[name]["p"] - q) <= 5 * np.sqrt(q * (1 - q) / visits[name]) + 1e-3), name
    m, s = p["in3"]["mean"], p["in3"]["std"]
    assert np.all(np.abs(got["in3"]["mean"] - m) <= 5 * s / np.sqrt(visits["in3"]))
    assert np.all(np.abs(got["in3"]["std"] - s) <= 5 * s / np.sqrt(2 * visits["in3"]))


def test_assignments_out_of_range_are_refused_with_the_latent(rng):
    model = pc.compile(_tree())
    x, z = _data(rng, 10)
    zz = _z_columns(model.circuit, z)
    zz[3, 0] = 9
    with pytest.raises(pc.ArgumentError, match="latent .* states, but row 3 assigns it 9"):
        fit_completed(model, x, zz)
    with pytest.raises(pc.ArgumentError, match="latents"):
        fit_completed(model, x, zz[:, :2])


def test_tied_transitions_pool_the_counts_of_every_step(rng):
    """A homogeneous HMM: its one transition matrix is the count of (z_t, z_t+1) pairs pooled
    over t, counted here from the states directly."""
    from pccompile.structures import hmm

    T, H, V, n = 5, 3, 4, 500
    model = pc.compile(pc.build(hmm(T, H, V, homogeneous=True), [Variable(f"x{t}", Domain(V)) for t in range(T)]))
    rmap = region_map(model.circuit)
    states = rng.integers(0, H, (n, T))
    x = rng.integers(0, V, (n, T))
    z = np.zeros((n, len(rmap.latents)), np.int64)
    col = {lat.name: lat.id for lat in rmap.latents}
    for t in range(T):
        z[:, col[f"Z[{t}]"]] = states[:, t]
    fit_completed(model, x, z, pseudocount=0.3)
    pairs = np.zeros((H, H))
    for t in range(T - 1):
        np.add.at(pairs, (states[:, t], states[:, t + 1]), 1)
    want = (pairs + 0.3 / H) / (pairs.sum(1, keepdims=True) + 0.3)
    c = model.to_circuit()
    tied = [i for i, nd in c.nodes.items() if getattr(nd, "tie", None) is None and hasattr(nd, "tie") and nd.size == H]
    assert len(tied) == 1
    np.testing.assert_allclose(c.params[tied[0]]["weights"], want, rtol=1e-5)


def test_a_row_needing_two_states_of_one_latent_is_refused_naming_the_node():
    """in0 and in1 share a latent (their elementwise product); an outer product pairing in0's
    row 0 with in1's row 1 would need that latent in two states at once."""
    in0, in1 = b.inputs(0, 2, Categorical(2), name="in0"), b.inputs(1, 2, Categorical(2), name="in1")
    cross = b.multiply(in0, in1, index=[np.array([0, 1]), np.array([1, 0])], name="cross")
    root = b.summate(b.multiply(in0, in1), cross, size=1)
    circuit = pc.build(root, [Variable("x0", Domain(2)), Variable("x1", Domain(2))])
    with pytest.raises(StructureError, match="cross.*two states of one latent"):
        region_map(circuit)


def test_counts_of_row_shards_sum_to_the_counts_of_all_rows(rng):
    """What a data-parallel LVD all-reduces: the counts of the ranks' shards, one of them empty
    (more ranks than rows), add up to the counts of all the rows, statistic for statistic."""
    from pccompile.lvd import completed_stats

    x, z = _data(rng, 50)
    model = pc.compile(_tree(), dtype=torch.float64, seed=4)
    zz = _z_columns(model.circuit, z)
    whole = completed_stats(model, x, zz)
    parts = [completed_stats(model, x[s], zz[s]) for s in (slice(0, 0), slice(0, 17), slice(17, 50))]
    assert parts[0].rows == 0 and float(parts[0].sum_flows.abs().sum()) == 0
    torch.testing.assert_close(sum(p.sum_flows for p in parts), whole.sum_flows)
    assert sum(p.rows for p in parts) == whole.rows == 50
    for i, stats in enumerate(whole.inputs):
        for k, v in stats.items():
            torch.testing.assert_close(sum(p.inputs[i][k] for p in parts), v, msg=f"partition {i}: {k}")


def test_patch_latents_are_one_per_patch_and_count_their_pixels_by_hand(tmp_path):
    """A patch HCLT over a 4 x 4 image in 2 x 2 patches has one latent per patch, whose region is
    the patch's pixels, and the counting MLE gives each pixel the frequencies of its values among
    the rows its patch's latent puts in each state (hand-counted here, pseudocount 0.5 spread over the
    categories)."""
    import pccompile as pc
    from pccompile.lvd import fit_completed, region_map

    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (400, 16))
    np.save(tmp_path / "x.npy", x)
    spec = f'var px[16] : categorical(3)\nimage = [4, 4]\nroot = patch_hclt(px, latents=2, patch=2, data="{tmp_path / "x.npy"}")\n'
    model = pc.compile(spec, dtype=torch.float64)
    rmap = region_map(model.circuit)
    patches = [lat for lat in rmap.latents if lat.name.startswith("Z[patch")]
    assert sorted(lat.variables for lat in patches) == [(0, 1, 4, 5), (2, 3, 6, 7), (8, 9, 12, 13), (10, 11, 14, 15)]
    assert all(lat.size == 2 for lat in patches)
    z = rng.integers(0, [lat.size for lat in rmap.latents], (400, len(rmap.latents)))
    fit_completed(model, x, z, pseudocount=0.5, rmap=rmap)
    c = model.to_circuit()  # the fitted parameters
    for lat in patches:
        states = z[:, lat.id]
        for var in lat.variables:
            node = next(n for n in c.nodes.values() if n.kind == "input" and n.var == var)
            got = np.asarray(c.params[node.id]["probs"], np.float64)
            # the papers.md rule: the pseudocount spread over the K categories
            want = np.array([[np.sum((states == s) & (x[:, var] == v)) + 0.5 / 3 for v in range(3)] for s in range(2)])
            np.testing.assert_allclose(got, want / want.sum(1, keepdims=True), rtol=1e-6)
