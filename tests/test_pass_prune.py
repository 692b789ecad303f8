"""`prune`: Theorems 1 and 2 of the paper against brute-force flows, flow pruning against its
baselines on a trained circuit, and the pass's rules (a kept edge per row, ties, errors)."""

import math

import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit, reference_flows, reference_prob
from pccompile.ir import ArgumentError, verify
from pccompile.passes import PassContext, Prune, parse_pipeline

import pccompile as pc
from pccompile import run_passes as run


def _data(circuit, rng, n=30):
    rows = list(all_assignments(circuit))
    return [rows[int(i)] for i in rng.integers(len(rows), size=n)]


def _mean_ll(circuit, data):
    return float(np.mean([math.log(reference_prob(circuit, r)) for r in data]))


def test_reference_flows_match_the_runtime_analysis(rng):
    from pccompile.analysis import circuit_edge_flows

    circuit = random_circuit(rng, num_vars=3)
    data = _data(circuit, rng)
    want = {}
    for r in data:
        for k, v in reference_flows(circuit, r).items():
            want[k] = want.get(k, 0) + v
    got = circuit_edge_flows(circuit, np.array(data))
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-7, atol=1e-9)


def test_theorem_1_holds_exactly_for_one_edge(rng):
    """Pruning edge (n, c) of row i and renormalising lowers the mean LL by exactly
    mean_x log[(1 - theta) / (1 - theta + theta F_n(x) - F_{n,c}(x))] (which can be negative)."""
    checked = 0
    for _ in range(10):
        circuit = random_circuit(rng, num_vars=3, tie=False, sparse=False)
        data = _data(circuit, rng)
        sums = [n for n in circuit.nodes.values() if n.kind == "sum" and circuit.child_size(n) > 1]
        n = sums[int(rng.integers(len(sums)))]
        i, c = int(rng.integers(n.size)), int(rng.integers(circuit.child_size(n)))
        w = np.asarray(circuit.params[n.id]["weights"], np.float64)
        theta = w[i, c] / w[i].sum()
        flows = [reference_flows(circuit, r)[n.id] for r in data]
        predicted = np.mean([math.log((1 - theta) / (1 - theta + theta * f[i].sum() - f[i, c])) for f in flows])
        # the pass itself removes just that edge: every candidate scores 1 but (n, i, c), 0
        scores = {m.id: np.ones(circuit.edge_mask(m).shape) for m in sums if m.tie is None}
        scores[n.id][i, c] = 0.0
        pruned = Prune(threshold=0.5, trim=False).run(circuit, PassContext(analyses={"edge_flows": scores}))
        assert int(pruned.edge_mask(pruned.nodes[n.id]).sum()) == int(circuit.edge_mask(n).sum()) - 1
        actual = _mean_ll(circuit, data) - _mean_ll(pruned, data)
        assert actual == pytest.approx(predicted, abs=1e-6)
        checked += 1
    assert checked == 10


def test_theorem_2_bounds_the_loss_of_the_edges_the_pass_removes(rng):
    """For the set E the pass removes: drop in mean LL <= -mean_x log(1 - sum_E F_{n,c}(x))."""
    checked = 0
    for trial in range(8):
        circuit = random_circuit(rng, num_vars=3, tie=False, sparse=False)
        data = _data(circuit, rng)
        pruned = run(circuit, "prune{fraction=0.2,trim=false}", data=np.array(data))
        verify(pruned, require_params=True)
        kept = {
            nid: _kept_in_original_columns(circuit, pruned, nid)
            for nid in circuit.nodes
            if circuit.nodes[nid].kind == "sum" and circuit.nodes[nid].tie is None
        }
        per_x = []
        for r in data:
            f = reference_flows(circuit, r)
            per_x.append(sum(float(fl[~kept[nid]].sum()) for nid, fl in f.items()))
        if max(per_x) >= 1:
            continue
        checked += 1
        bound = -np.mean([math.log(1 - s) for s in per_x])
        drop = _mean_ll(circuit, data) - _mean_ll(pruned, data)
        assert drop <= bound + 1e-9
    assert checked >= 3


def _kept_in_original_columns(circuit, pruned, nid):
    """The pruned node's edge mask over the original node's columns (dropped children: none kept;
    a node the pass removed altogether: nothing kept)."""
    old = circuit.nodes[nid]
    full = np.zeros((old.size, circuit.child_size(old)), bool)
    if nid not in pruned.nodes:
        return full
    new = pruned.nodes[nid]
    mask, start, col = pruned.edge_mask(new), 0, {}
    for c in new.children:
        col[c] = (start, start + pruned.nodes[c].size)
        start += pruned.nodes[c].size
    start = 0
    for c in old.children:
        size = circuit.nodes[c].size
        if c in col:
            full[:, start : start + size] = mask[:, col[c][0] : col[c][1]]
        start += size
    return full


def test_flow_pruning_loses_less_than_random_and_magnitude_on_a_trained_circuit():
    from pccompile.learn import TrainConfig, Trainer

    x = pc.datasets.load_builtin("builtin:digits")
    src = 'var px[64] : categorical(17)\nroot = hclt(px, latents=8, data="builtin:digits")\n'
    model = pc.compile(src)
    Trainer(model, TrainConfig(epochs=3, batch_size=128, step_size=0.3), x).run()
    trained = model.to_circuit()
    with torch.no_grad():
        base = float(pc.compile(trained)(x).mean())
        drops = {}
        for crit in ("flow", "random", "magnitude"):
            pruned = run(trained, f"prune{{fraction=0.6,criterion={crit}}}", data=x)
            drops[crit] = base - float(pc.compile(pruned)(x).mean())
    assert drops["flow"] < drops["random"] and drops["flow"] <= drops["magnitude"], drops


def test_every_row_keeps_an_edge_and_tied_sums_are_pruned_alike(rng):
    circuit = pc.compile("var x[5] : categorical(3)\nroot = hmm(x, latents=4)\n", passes="init").to_circuit()
    pruned = Prune(fraction=1.0, criterion="magnitude").run(circuit)
    verify(pruned, require_params=True)
    sums = [n for n in pruned.nodes.values() if n.kind == "sum" and n.tie is None and n.id != pruned.root]
    for n in sums:
        assert np.all(pruned.edge_mask(n).sum(1) == 1)  # only each row's largest weight is left
    for n in pruned.nodes.values():
        if n.kind == "sum" and n.tie is not None:
            np.testing.assert_array_equal(pruned.edge_mask(n), pruned.edge_mask(pruned.param_source(n)))
    assert Prune(fraction=0.0, criterion="random").run(circuit).stats() == circuit.stats()


def test_prune_errors_name_the_pass_and_option():
    with pytest.raises(ArgumentError, match="pass 'prune': option 'criterion' expects one of flow, random, magnitude"):
        parse_pipeline("prune{criterion=size}")
    with pytest.raises(ArgumentError, match=r"pass 'prune': option 'fraction' expects a finite number in \[0, 1\]"):
        parse_pipeline("prune{fraction=2}")
    with pytest.raises(ArgumentError, match="pass 'prune' needs the 'edge_flows' analysis, which needs data"):
        pc.compile(
            "var a, b : binary\nla[2] = bernoulli(a)\nlb[2] = bernoulli(b)\np = product(la, lb)\nroot = sum(p)\n",
            passes="prune",
        )


def test_block_granularity_removes_whole_tiles_and_leaves_every_row_an_edge(rng):
    from pccompile.structures import hclt_from_tree

    circuit = pc.compile(pc.build(hclt_from_tree(np.array([-1, 0, 0]), 3, latents=32)), passes="init").to_circuit()
    pruned = Prune(fraction=0.7, criterion="random", granularity="block", block=16).run(circuit)
    verify(pruned, require_params=True)
    for n in pruned.nodes.values():
        if n.kind != "sum" or n.id == pruned.root or n.mask is None:
            continue
        m = np.asarray(n.mask)
        assert m.any(1).all()
        tiles = m.reshape(m.shape[0] // 16, 16, m.shape[1] // 16, 16).any((1, 3))
        full = m.reshape(tiles.shape[0], 16, tiles.shape[1], 16).all((1, 3))
        assert np.array_equal(tiles, full)  # a tile is kept whole or not at all
    with pytest.raises(ArgumentError, match="option 'granularity' expects one of edge, block"):
        parse_pipeline("prune{granularity=row}")


def test_threshold_and_per_row_scope_and_missing_weights(rng):
    circuit = random_circuit(rng, num_vars=3, tie=False, sparse=False)
    scores = {
        n.id: np.asarray(circuit.params[n.id]["weights"])
        for n in circuit.nodes.values()
        if n.kind == "sum" and n.tie is None and circuit.child_size(n) > 1
    }
    pruned = Prune(threshold=0.3, criterion="magnitude", trim=False).run(circuit)
    checked = 0
    for nid, w in scores.items():
        if nid in pruned.nodes and pruned.edge_mask(pruned.nodes[nid]).shape == w.shape:
            kept = pruned.edge_mask(pruned.nodes[nid])
            best = np.argmax(w, 1)
            for r in range(w.shape[0]):  # weights >= 0.3 stay; below go, unless the row's largest
                expect = w[r] >= 0.3
                expect[best[r]] = True
                np.testing.assert_array_equal(kept[r], expect)
                checked += 1
    per_row = Prune(fraction=0.5, criterion="magnitude", scope="node").run(circuit)
    for nid, w in scores.items():
        if nid in per_row.nodes and per_row.edge_mask(per_row.nodes[nid]).shape == w.shape:
            kept = per_row.edge_mask(per_row.nodes[nid]).sum(1)
            assert np.all(kept == w.shape[1] - np.floor(0.5 * w.shape[1]))  # half of every row goes
            checked += 1
    assert checked > 2
    with pytest.raises(ArgumentError, match="option 'scope' expects one of global, node, got 'row'"):
        parse_pipeline("prune{scope=row}")
    bare = pc.parse(
        "var a, b : binary\nla[2] = bernoulli(a)\nlb[2] = bernoulli(b)\np = product(la, lb)\nroot = sum(p)\n"
    )
    with pytest.raises(ArgumentError, match="pass 'prune' needs the weights of node 'root'; run 'init' first"):
        Prune(criterion="random").run(bare)


@pytest.mark.parametrize("granularity", ["edge", "block"])
def test_pruning_leaves_no_dead_row_and_counts_live_parameters(rng, granularity):
    """After prune every row of every vector is read by some live row (block pruning used to
    keep whole 16-row blocks for one live row: 36-38% dead rows on the digits), the
    distribution is the untrimmed one exactly, and the parameter count is a recount of the
    kept sum edges and input parameters."""
    from pccompile.passes.trim import live_rows

    from pccompile.structures import hclt_from_tree

    circuit = pc.compile(pc.build(hclt_from_tree(np.array([-1, 0, 0, 1]), 3, latents=32)), passes="init").to_circuit()
    opts = dict(fraction=0.8, criterion="random", granularity=granularity, block=16, seed=3)
    pruned, untrimmed = Prune(**opts).run(circuit), Prune(**opts, trim=False).run(circuit)
    live = live_rows(pruned)
    assert all(live[i].all() for i in pruned.nodes), "a dead row survived"
    dead = sum(int((~m).sum()) for m in live_rows(untrimmed).values())
    assert dead > 0  # the case is not trivial: trimming had rows to remove
    x = np.array([[a, b, c, d] for a in range(3) for b in range(3) for c in range(3) for d in range(3)])
    np.testing.assert_allclose(_mean_ll(pruned, x), _mean_ll(untrimmed, x), rtol=1e-6)
    recount = 0
    for n in pruned.nodes.values():
        if n.kind == "sum" and n.tie is None:
            recount += int(np.count_nonzero(pruned.params[n.id]["weights"]))
        elif n.kind == "input":
            recount += int(sum(np.asarray(v).size for v in pruned.params[n.id].values()))
    assert pruned.stats()["parameters"] == recount
