"""save/load, data validation, networkx round trip and the networkx format contract."""

import zipfile

import networkx as nx
import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit
from pccompile.ir import DataError, FormatError, StructureError, same_circuit

import pccompile as pc
from pccompile.io.data import check_data, load_array


def test_save_load_gives_identical_model(rng, tmp_path):
    circuit = random_circuit(rng, num_vars=4, gaussian=True)
    model = pc.compile(circuit)
    with torch.no_grad():  # move parameters away from their initial values
        model.sum_logits.add_(torch.randn_like(model.sum_logits))
    path = tmp_path / "m.pcz"
    pc.save(model, path)
    back = pc.load(path)
    x = torch.tensor(
        [
            [
                float(rng.integers(v.domain.num_cats)) if v.domain.num_cats else float(rng.normal())
                for v in circuit.variables
            ]
            for _ in range(16)
        ]
    )
    # bit for bit: the file holds the float32 parameters themselves, not a rounded copy
    saved, loaded = dict(model.named_parameters()), dict(back.named_parameters())
    assert saved.keys() == loaded.keys()
    for name, p in saved.items():
        assert torch.equal(loaded[name], p), name
    assert torch.equal(back(x), model(x))
    assert same_circuit(back.circuit, model.to_circuit(), rtol=0)


def test_load_rejects_junk_and_never_unpickles(tmp_path):
    bad = tmp_path / "bad.pcz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="not a pccompile model"):
        pc.load(bad)
    with zipfile.ZipFile(tmp_path / "v9.pcz", "w") as z:
        z.writestr("model.json", '{"format": "pccompile-model", "version": 9}')
        z.writestr("arrays.safetensors", b"")
    with pytest.raises(FormatError, match="format version 9"):
        pc.load(tmp_path / "v9.pcz")
    with pytest.raises(FormatError, match="does not exist"):
        pc.load(tmp_path / "nope.pcz")


@pytest.mark.parametrize("value,row,col", [(2, 1, 0), (-3, 0, 2), (7, 2, 1)])
def test_out_of_range_data_names_variable_row_value(value, row, col):
    model = pc.compile(
        "var a, b, c : binary\nla[2] = bernoulli(a)\nlb[2] = bernoulli(b)\nlc[2] = bernoulli(c)\n"
        "p = product(la, lb, lc)\nroot = sum(p)\n"
    )
    x = np.zeros((3, 3), dtype=np.int64)
    x[row, col] = value
    name = "abc"[col]
    with pytest.raises(DataError, match=rf"variable '{name}' \(column {col}\) has value {value} in row {row}"):
        model(x)
    with pytest.raises(DataError, match=rf"variable '{name}'.*in row {row}"):
        check_data(x, model.program.var_cats, model.program.var_names)


def test_check_data_names_the_true_row_across_chunks():
    model = pc.compile(
        "var a, b : binary\nla[2] = bernoulli(a)\nlb[2] = bernoulli(b)\np = product(la, lb)\nroot = sum(p)\n"
    )
    x = np.zeros((9, 2), dtype=np.int64)
    x[7, 1] = 3
    with pytest.raises(DataError, match=r"^train: variable 'b' \(column 1\) has value 3 in row 7;"):
        check_data(x, model.program.var_cats, model.program.var_names, "train", chunk=2)


def test_wrong_shape_and_fractional_values():
    model = pc.compile(
        "var a, b : binary\nla[2] = bernoulli(a)\nlb[2] = bernoulli(b)\np = product(la, lb)\nroot = sum(p)\n"
    )
    with pytest.raises(DataError, match=r"shape \[batch, 2\]"):
        model(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(DataError, match="not an integer category"):
        model(np.array([[0.5, 1.0]]))
    # NaN in a float array means missing for discrete variables too
    assert torch.isfinite(model(np.array([[np.nan, 1.0]]))).all()


def test_integer_arrays_are_valid_for_real_variables():
    """Real-valued data that happens to be integral (load_array returns it as int64) evaluates
    exactly like the same values as floats."""
    model = pc.compile("examples/mixture.pc")
    x = np.array([[0, 2, 1], [1, 0, -2]])
    torch.testing.assert_close(model(x), model(x.astype(np.float32)))


def test_data_loaders(tmp_path):
    x = np.array([[0, 1, 1], [1, 0, 1]])
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x)
    np.savetxt(tmp_path / "c.data", x, fmt="%d", delimiter=",")
    np.savetxt(tmp_path / "d.txt", x, fmt="%d")
    for name in ("a.npy", "b.npz", "c.data", "d.txt"):
        np.testing.assert_array_equal(load_array(tmp_path / name), x)


@pytest.mark.parametrize("trial", range(6))
def test_networkx_round_trip(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 5)), tie=False)
    G = pc.to_networkx(circuit)
    back = pc.compile(G, dtype=torch.float64)
    G2 = pc.to_networkx(back.to_circuit())

    def nm(a, b):
        return (
            a["type"] == b["type"]
            and a.get("var") == b.get("var")
            and a.get("dist") == b.get("dist")
            and np.allclose(a.get("params", 0), b.get("params", 0), rtol=1e-5)
        )

    def em(a, b):
        return np.isclose(a.get("weight", 0), b.get("weight", 0), rtol=1e-5)

    assert nx.is_isomorphic(G, G2, node_match=nm, edge_match=em)
    x = torch.tensor(all_assignments(circuit))
    orig = pc.compile(circuit, dtype=torch.float64)
    torch.testing.assert_close(back(x), orig(x), rtol=1e-6, atol=1e-9)


def test_vectorize_packs_scalar_graphs():
    G = nx.DiGraph()
    for k in range(3):  # three mixture components over two variables
        G.add_node(f"a{k}", type="input", var=0, dist="bernoulli", params=[0.2 + 0.3 * k])
        G.add_node(f"b{k}", type="input", var=1, dist="categorical", params=[0.1, 0.2 + 0.1 * k, 0.7 - 0.1 * k])
        G.add_node(f"p{k}", type="product")
        G.add_edge(f"p{k}", f"a{k}")
        G.add_edge(f"p{k}", f"b{k}")
        G.add_node("r", type="sum")
        G.add_edge("r", f"p{k}", weight=[0.2, 0.3, 0.5][k])
    model = pc.compile(G)
    assert len(model.circuit.nodes) == 4  # two input vectors, one product vector, the root
    expect = sum(w * [0.2, 0.5, 0.8][k] * [0.2, 0.3, 0.4][k] for k, w in enumerate([0.2, 0.3, 0.5]))
    assert np.isclose(float(model(torch.tensor([[1, 1]])).detach().exp()), expect, rtol=1e-6)


@pytest.mark.parametrize(
    "mutate,text",
    [
        (lambda G: G.add_node("extra", type="sum"), "exactly one node without parents"),
        (lambda G: G.nodes["a"].update(type="mixture"), "'type' must be"),
        (lambda G: G.nodes["a"].update(dist="weibull"), "'dist' must be"),
        (lambda G: G.nodes["a"].pop("var"), "'var'"),
        (lambda G: G.edges["r", "p"].pop("weight"), "'weight'"),
    ],
)
def test_networkx_format_errors(mutate, text):
    G = nx.DiGraph()
    G.add_node("a", type="input", var=0, dist="bernoulli", params=[0.3])
    G.add_node("b", type="input", var=1, dist="bernoulli", params=[0.6])
    G.add_node("p", type="product")
    G.add_node("r", type="sum")
    G.add_edges_from([("p", "a"), ("p", "b")])
    G.add_edge("r", "p", weight=1.0)
    pc.compile(G)
    mutate(G)
    with pytest.raises(StructureError, match=text):
        pc.compile(G)


def test_arrays_in_any_memory_order_save_and_load_unchanged(tmp_path):
    """A mask in Fortran order (what `mask[:, cols]` gives) was written as raw bytes in the wrong
    order: safetensors needs C order. The pruning pass made such masks."""
    la = pc.inputs(0, 2, pc.Bernoulli())
    lb = pc.inputs(1, 2, pc.Bernoulli())
    prod = pc.multiply(la, lb)
    mask = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], bool)[:, [0, 2]]
    assert not mask.flags["C_CONTIGUOUS"]
    s = pc.summate(prod, size=4, mask=mask)
    model = pc.compile(pc.summate(s, size=1))
    pc.save(model, tmp_path / "m.pcz")
    back = pc.load(tmp_path / "m.pcz")
    np.testing.assert_array_equal(back.circuit.nodes[back.circuit.root - 1].mask, mask)
