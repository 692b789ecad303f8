"""The region map (pccompile.lvd.regions): every sum vector of every structure template gets
exactly one row latent and latents for each of its child vectors, covering its columns once;
HCLT and RAT-SPN latents are the ones their papers describe."""

import numpy as np
import pytest
from pccompile.ir import Circuit, Domain, SumNode, Variable

import pccompile as pc
from pccompile.lvd.regions import region_map
from pccompile.structures import hclt, hclt_from_tree, hmm, pd, rat_spn


def _circuit(root, V, cats) -> Circuit:
    return pc.build(root, [Variable(f"x{i}", Domain(cats)) for i in range(V)])


def _templates(rng):
    x = rng.integers(0, 3, size=(300, 7))
    return {
        "hclt": _circuit(hclt(x, latents=4, num_cats=3), 7, 3),
        "hclt_mixture": _circuit(hclt(x, latents=3, num_cats=3, trees=2), 7, 3),
        "rat_spn": _circuit(rat_spn(8, 3, depth=2, repetitions=2, num_sums=3, num_inputs=2), 8, 3),
        "pd": _circuit(pd(4, 4, 3, latents=3, delta=2), 16, 3),
        "hmm": _circuit(hmm(5, 3, 4, homogeneous=True), 5, 4),
    }


@pytest.mark.parametrize("name", ["hclt", "hclt_mixture", "rat_spn", "pd", "hmm"])
def test_every_sum_vector_is_mapped_once_and_its_columns_covered(name, rng):
    circuit = _templates(rng)[name]
    rmap = region_map(circuit)
    sums = [i for i in circuit.reachable() if isinstance(circuit.nodes[i], SumNode)]
    assert sorted(rmap.sums) == sorted(sums)
    sizes = {lat.id: lat.size for lat in rmap.latents}
    for i in sums:
        n, s = circuit.nodes[i], rmap.sums[i]
        assert sizes[s.rows] == n.size  # one state per node
        covered = np.zeros(circuit.child_size(n), int)
        for kid in s.children:
            size = circuit.nodes[kid.child].size
            covered[kid.offset : kid.offset + size] += 1
            assert kid.states.shape == (size, len(kid.latents))
            for j, lat in enumerate(kid.latents):  # every state in range
                assert 0 <= kid.states[:, j].min() and kid.states[:, j].max() < sizes[lat]
            assert len({tuple(r) for r in kid.states}) == size  # distinct rows: distinct states
        assert np.all(covered == 1)
    vectors = [v for lat in rmap.latents for v in lat.vectors]
    assert len(vectors) == len(set(vectors))  # a vector belongs to one latent


def test_hclt_latents_are_the_tree_variables():
    parent = np.array([-1, 0, 0, 1])  # 0 -> 1 -> 3, 0 -> 2
    circuit = _circuit(hclt_from_tree(parent, 2, latents=3), 4, 2)
    rmap = region_map(circuit)
    by_name = {lat.name: lat for lat in rmap.latents}
    assert {f"Z[{v}]" for v in range(4)} <= set(by_name)
    for v in range(4):
        assert by_name[f"Z[{v}]"].variables == (v,) and by_name[f"Z[{v}]"].size == 3
    for i, s in rmap.sums.items():
        n = circuit.nodes[i]
        if n.size == 1:  # the root: one state, over the root variable's latent
            assert [k.latents for k in s.children] == [(by_name["Z[0]"].id,)]
            continue
        ((kid,),) = [s.children]
        child_var = int(circuit.regions[kid.child].variables[0])
        row_var = int(parent[child_var])  # a message sum: rows are the parent's states
        assert s.rows == by_name[f"Z[{row_var}]"].id
        assert kid.latents == (by_name[f"Z[{child_var}]"].id,)
        np.testing.assert_array_equal(kid.states[:, 0], np.arange(3))
    for i, lat in rmap.inputs.items():
        assert rmap.latents[lat].variables == (circuit.nodes[i].var,)


def test_outer_products_stand_for_pairs_of_latents():
    circuit = _circuit(rat_spn(4, 2, depth=1, repetitions=1, num_sums=2, num_inputs=3), 4, 2)
    rmap = region_map(circuit)
    (root,) = [s for i, s in rmap.sums.items() if circuit.nodes[i].size == 1]
    ((kid,),) = [root.children]
    assert len(kid.latents) == 2 and [rmap.latents[a].size for a in kid.latents] == [3, 3]
    np.testing.assert_array_equal(kid.states, np.stack([np.repeat(np.arange(3), 3), np.tile(np.arange(3), 3)], 1))
