"""Every verification rule, broken on purpose; the error names the node and the rule."""

import numpy as np
import pytest
from pccompile.ir import (
    Bernoulli,
    Circuit,
    CycleError,
    DecomposabilityError,
    Domain,
    DomainError,
    InputNode,
    ParameterError,
    ProductNode,
    Region,
    SizeMismatchError,
    SmoothnessError,
    StructureError,
    SumNode,
    Variable,
    verify,
)

import pccompile as pc

V2 = (Variable("a", Domain(2)), Variable("b", Domain(2)))


def _inputs():
    return {0: InputNode(0, "la", 0, 2, Bernoulli()), 1: InputNode(1, "lb", 1, 2, Bernoulli())}


def _params(extra=None):
    p = {0: {"p": np.array([0.2, 0.7], np.float32)}, 1: {"p": np.array([0.4, 0.9], np.float32)}}
    p.update(extra or {})
    return p


def _ok():
    nodes = _inputs()
    nodes[2] = ProductNode(2, "prod", (0, 1), 2)
    nodes[3] = SumNode(3, "top", (2,), 1)
    return Circuit(V2, nodes, 3, _params({3: {"weights": np.array([[0.5, 0.5]], np.float32)}}))


def test_valid_circuit_passes():
    verify(_ok(), require_params=True)


def _expect(exc, circuit, node, text):
    with pytest.raises(exc) as e:
        verify(circuit, require_params=True)
    assert e.value.node == node
    assert f"node '{node}'" in str(e.value) and exc.rule in str(e.value) and text in str(e.value), str(e.value)


def test_cycle():
    c = _ok()
    nodes = dict(c.nodes)
    nodes[2] = ProductNode(2, "prod", (0, 1, 3), 2)
    _expect(CycleError, c.replace(nodes=nodes), "prod", "reachable from itself")


def test_non_smooth_sum():
    nodes = _inputs()
    nodes[2] = SumNode(2, "top", (0, 1), 1)
    c = Circuit(V2, nodes, 2, _params({2: {"weights": np.full((1, 4), 0.25, np.float32)}}))
    _expect(SmoothnessError, c, "top", "differ in scope")


def test_non_decomposable_product():
    nodes = _inputs()
    nodes[1] = InputNode(1, "lb", 0, 2, Bernoulli())
    nodes[2] = ProductNode(2, "prod", (0, 1), 2)
    nodes[3] = SumNode(3, "top", (2,), 1)
    c = Circuit(V2[:1], nodes, 3, _params({3: {"weights": np.array([[0.5, 0.5]], np.float32)}}))
    _expect(DecomposabilityError, c, "prod", "share variable 'a'")


def test_size_mismatch():
    c = _ok()
    nodes = dict(c.nodes)
    nodes[1] = InputNode(1, "lb", 1, 3, Bernoulli())
    c = c.replace(
        nodes=nodes,
        params=_params({1: {"p": np.full(3, 0.5, np.float32)}, 3: {"weights": np.array([[0.5, 0.5]], np.float32)}}),
    )
    _expect(SizeMismatchError, c, "prod", "child 'lb' of size 3")


@pytest.mark.parametrize(
    "w,text",
    [
        ([[0.7, 0.7]], "sum to 1.4"),
        ([[1.5, -0.5]], "negative"),
        ([[np.nan, 1.0]], "NaN"),
    ],
)
def test_bad_weights(w, text):
    c = _ok()
    c = c.with_params(_params({3: {"weights": np.array(w, np.float32)}}))
    _expect(ParameterError, c, "top", text)


def test_bad_input_parameters():
    c = _ok().with_params(
        _params({0: {"p": np.array([0.2, 1.7], np.float32)}, 3: {"weights": np.array([[0.5, 0.5]], np.float32)}})
    )
    _expect(ParameterError, c, "la", "[0, 1]")


def test_category_out_of_range():
    c = _ok()
    nodes = dict(c.nodes)
    nodes[0] = InputNode(0, "la", 0, 2, pc.Categorical(5))
    c = c.replace(nodes=nodes)
    _expect(DomainError, c, "la", "categorical(5)"[:11])


def test_unnamed_variable_out_of_scope_and_root_size():
    c = _ok()
    c2 = c.replace(variables=V2 + (Variable("z", Domain(2)),))
    _expect(StructureError, c2, "top", "'z' is declared but not in the root's scope")
    nodes = dict(c.nodes)
    nodes[3] = SumNode(3, "top", (2,), 2)
    _expect(
        SizeMismatchError,
        c.replace(nodes=nodes).with_params(_params({3: {"weights": np.full((2, 2), 0.5, np.float32)}})),
        "top",
        "root must have size 1",
    )


def test_tie_mismatch():
    c = _ok()
    nodes = dict(c.nodes)
    nodes[3] = SumNode(3, "s1", (2,), 1)
    nodes[4] = SumNode(4, "s2", (0,), 2, tie=3)
    nodes[5] = ProductNode(5, "pp", (3,), 1)
    _expect(SizeMismatchError, c.replace(nodes=nodes, root=5), "s2", "tied to 's1'")


def test_missing_parameters_only_when_required():
    c = _ok().with_params({})
    verify(c)
    _expect(ParameterError, c, "la", "missing")


def _with(nodes_update, params_update=None, root=3):
    c = _ok()
    nodes = {**c.nodes, **nodes_update}
    return Circuit(c.variables, nodes, root, {**c.params, **(params_update or {})})


def test_a_child_that_does_not_exist():
    with pytest.raises(StructureError, match=r"node 'top' breaks rule 'well formed': child id 9 does not exist"):
        verify(_with({3: SumNode(3, "top", (9,), 1)}))


def test_a_mask_of_the_wrong_shape_and_an_empty_mask_row():
    with pytest.raises(SizeMismatchError, match=r"node 'top' .*mask has shape \(1, 3\), expected \(1, 2\)"):
        verify(_with({3: SumNode(3, "top", (2,), 1, np.ones((1, 3), bool))}))
    s = SumNode(4, "mid", (2,), 2, np.array([[1, 0], [0, 0]], bool))
    top = SumNode(5, "top2", (4,), 1)
    with pytest.raises(StructureError, match=r"node 'mid' .*row 1 has no edge left in its mask"):
        verify(_with({4: s, 5: top}, root=5))


def test_ties_to_a_non_sum_and_ties_with_different_masks():
    src = SumNode(4, "src", (2,), 2, np.array([[1, 0], [1, 1]], bool))
    with pytest.raises(StructureError, match=r"node 'bad' .*tied to something that is not a sum node"):
        verify(_with({4: src, 5: SumNode(5, "bad", (2,), 2, tie=2), 6: SumNode(6, "t", (4, 5), 1)}, root=6))
    other = SumNode(5, "tied", (2,), 2, np.array([[1, 1], [0, 1]], bool), tie=4)
    with pytest.raises(StructureError, match=r"node 'tied' .*tied to 'src' but their edge masks differ"):
        verify(_with({4: src, 5: other, 6: SumNode(6, "t", (4, 5), 1)}, root=6))


def test_parameters_on_products_and_on_tied_sums():
    with pytest.raises(ParameterError, match=r"node 'prod' .*product nodes have no parameters"):
        verify(_with({}, {2: {"weights": np.ones((2, 2), np.float32)}}))
    src = SumNode(4, "src", (2,), 2)
    tied = SumNode(5, "tied", (2,), 2, tie=4)
    w = {"weights": np.full((2, 2), 0.5, np.float32)}
    with pytest.raises(ParameterError, match=r"node 'tied' .*a tied sum stores no parameters of its own"):
        verify(_with({4: src, 5: tied, 6: SumNode(6, "t", (4, 5), 1)}, {5: w}, root=6))


@pytest.mark.parametrize(
    "change,said",
    [
        ({"regions": {9: Region("Z9", (0,))}}, r"region 'Z9' names node id 9, which does not exist"),
        ({"regions": {0: Region("Za", (1,))}}, r"node 'la' .* region 'Za' holds variable 1, which is not in"),
        ({"meta": {"image": [2, 2]}}, r"meta field 'image' \[2, 2\] has 4 pixels, but the circuit has 2 variables"),
        ({"meta": {"name": ["x"]}}, r"meta field 'name' is \['x'\]; expected text"),
    ],
)
def test_metadata_and_regions_are_verified(change, said):
    """Regions name existing nodes and variables of their node's scope; `image` covers the
    variables and `name` is text, for a circuit from any front end (the loader relies on it)."""
    c = _ok()
    bad = Circuit(c.variables, c.nodes, c.root, c.params, change.get("meta", {}), change.get("regions", {}))
    with pytest.raises(StructureError, match=said):
        verify(bad)
    verify(Circuit(c.variables, c.nodes, c.root, c.params, {"image": [1, 2], "name": "ok"}, {2: Region("Z", (0, 1))}))
