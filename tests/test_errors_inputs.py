"""Bad networkx graphs, data, saved models and training arguments: each is a PCError whose message
names what was wrong, and the CLI prints one message and exits 2."""

import json
import math
import zipfile

import networkx as nx
import numpy as np
import pytest
import torch
from helpers import random_circuit
from pccompile.ir import DataError, DecomposabilityError, FormatError, ParameterError, PCError, StructureError, verify
from pccompile.passes import registered
from typer.testing import CliRunner

import pccompile as pc
from pccompile.cli import app
from pccompile.io.data import load_array
from pccompile.learn import TrainConfig, Trainer

runner = CliRunner()
BINARY = "var a, b : binary\nla[2] = bernoulli(a)\nlb[2] = bernoulli(b)\np = product(la, lb)\nroot = sum(p)\n"


# -- the silent miscompile ----------------------------------------------------------------------
def _two_inputs_over_one_variable() -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_node("root", type="sum")
    for k in "pq":
        G.add_node(k, type="product")
        G.add_edge("root", k, weight=0.5)
    G.add_node("a", type="input", var=0, dist="bernoulli", params=[0.9])
    G.add_node("b", type="input", var=0, dist="bernoulli", params=[0.2])
    for k in "pq":
        G.add_edge(k, "a")
        G.add_edge(k, "b")
    return G


def test_a_product_over_one_variable_twice_is_refused_by_every_front_end():
    with pytest.raises(
        DecomposabilityError,
        match=r"node '[pq]' breaks rule 'decomposable': children share "
        r"variable 'x0'",
    ):
        pc.compile(_two_inputs_over_one_variable())
    a = pc.inputs(0, 1, pc.Bernoulli(), p=[0.9], name="a")
    b = pc.inputs(0, 1, pc.Bernoulli(), p=[0.2], name="b")
    root = pc.summate(pc.multiply(a, b, name="p"), pc.multiply(a, b, name="q"), weights=[[0.5, 0.5]])
    with pytest.raises(DecomposabilityError, match="node '[pq]'"):
        pc.compile(root)


def test_no_pass_turns_an_invalid_circuit_into_a_compiled_model(rng):
    """Random circuits broken in one rule: compile refuses each, and vectorize refuses products
    whose children share a vector even when called on its own."""
    from pccompile.ir import Circuit, ProductNode
    from pccompile.passes import Vectorize

    broken = 0
    for _ in range(30):
        c = random_circuit(rng, num_vars=3)
        prods = [n for n in c.nodes.values() if isinstance(n, ProductNode) and n.index is None]
        if not prods:
            continue
        p = prods[int(rng.integers(len(prods)))]
        nodes = dict(c.nodes)
        nodes[p.id] = ProductNode(p.id, p.name, p.children + p.children[:1], p.size)
        bad = Circuit(c.variables, nodes, c.root, c.params, c.meta)
        with pytest.raises(DecomposabilityError):
            verify(bad)
        with pytest.raises(PCError):
            pc.compile(bad)
        broken += 1
    assert broken > 10
    with pytest.raises(DecomposabilityError, match="same variables"):
        Vectorize().run(_unverified_scalar(_two_inputs_over_one_variable()))


# every registered pass, with the options that let it run without data (prune by flow needs the
# edge flows of a data set: random scores exercise the same edge removal)
PASS_OPTIONS = {"prune": {"criterion": "random"}}


@pytest.mark.parametrize("name", sorted(registered()))
def test_every_pass_keeps_valid_circuits_valid_and_invalid_ones_invalid(name, rng):
    """On random valid circuits (vector and scalar) a pass's output verifies; on random circuits
    broken in one rule it raises a PCError or its output still fails verification."""
    from pccompile.ir import Circuit, ProductNode

    p = registered()[name](**PASS_OPTIONS.get(name, {}))
    for _ in range(8):
        c = random_circuit(rng, num_vars=3)
        for circuit in (c, pc.from_networkx(pc.to_networkx(pc.compile(c).to_circuit()))):
            verify(p.run(circuit))
        broken = [_unverified_scalar(_two_inputs_over_one_variable())]
        for q in [n for n in c.nodes.values() if isinstance(n, ProductNode) and n.index is None][:1]:
            nodes = dict(c.nodes)
            nodes[q.id] = ProductNode(q.id, q.name, q.children + q.children[:1], q.size)
            broken.append(Circuit(c.variables, nodes, c.root, c.params, c.meta))
        for bad in broken:
            try:
                out = p.run(bad)
            except PCError:
                continue
            with pytest.raises(PCError):
                verify(out)


def _unverified_scalar(G):
    import pccompile.nx as pnx

    orig = pnx.verify
    pnx.verify = lambda circuit: None
    try:
        return pc.from_networkx(G)
    finally:
        pnx.verify = orig


# -- networkx -------------------------------------------------------------------------------
def _mixture() -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_node("root", type="sum")
    G.add_node("my leaf", type="input", var=0, dist="bernoulli", params=[0.3])
    G.add_node(7, type="input", var=0, dist="bernoulli", params=[0.6])
    G.add_edge("root", "my leaf", weight=0.5)
    G.add_edge("root", 7, weight=0.5)
    return G


@pytest.mark.parametrize(
    "attr,value,match",
    [
        ("params", "abc", r"node 'my leaf' .*'params' must be a list of numbers, got 'abc'"),
        ("params", None, r"node 'my leaf' .*needs an attribute 'params'"),
        ("params", [0.5, "x"], r"node 'my leaf' .*must be a list of numbers"),
        ("params", [1.5], r"node 'my leaf' .*bernoulli p must lie in \[0, 1\]"),
        ("var", "0", r"node 'my leaf' .*integer attribute 'var' >= 0, got '0'"),
        ("var", 10**9, r"node 'my leaf' .*variable index 1,000,000,000 is beyond the limit"),
        (
            "dist",
            "weibull",
            r"node 'my leaf' .*'dist' must be bernoulli, beta, binomial, categorical, exponential, gamma, gaussian, geometric, laplace, lognormal, negative_binomial or poisson",
        ),
    ],
)
def test_networkx_node_attributes_are_checked_naming_the_users_node(attr, value, match):
    G = _mixture()
    G.nodes["my leaf"][attr] = value
    with pytest.raises(PCError, match=match):
        pc.compile(G)


@pytest.mark.parametrize(
    "value,match",
    [
        ("0.5", r"must be a number, got '0.5'"),
        (None, "got None"),
        ([0.5], "must be a number"),
        (float("nan"), "NaN or infinite"),
    ],
)
def test_networkx_weights_are_checked(value, match):
    G = _mixture()
    G.edges["root", 7]["weight"] = value
    with pytest.raises(ParameterError, match=r"node 'root' .*" + match):
        pc.compile(G)


def test_networkx_errors_name_non_identifier_keys_as_given():
    G = _mixture()
    G.nodes[7]["params"] = [-0.5]
    with pytest.raises(ParameterError, match=r"node '7' breaks rule"):
        pc.compile(G)


def test_a_multigraph_is_refused():
    with pytest.raises(StructureError, match="multigraph has parallel edges"):
        pc.compile(nx.MultiDiGraph(_mixture()))


# -- data -------------------------------------------------------------------------------------
@pytest.fixture
def model():
    return pc.compile(BINARY)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("x.npz", b"PK\x03\x04 this is no zip", r"cannot read .*x\.npz"),
        ("x.data.gz", b"\x1f\x8b\x08\x00 broken gzip", r"cannot read .*x\.data\.gz"),
        ("x.npy", b"", r"x\.npy' is empty \(0 bytes\)"),
        ("x.data", b"0,1\n1\n", r"cannot read .*x\.data"),
        ("x.txt", b"\xff\xfe\x00bad", r"cannot read .*x\.txt"),
    ],
)
def test_corrupt_and_truncated_data_files_name_the_file(tmp_path, name, content, match):
    with pytest.raises(DataError, match=match):
        load_array(_write(tmp_path / name, content))


def test_truncated_npy_and_directories_and_strings_and_complex(tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((50, 2), dtype=np.int64))
    raw = (tmp_path / "ok.npy").read_bytes()
    with pytest.raises(DataError, match="cannot read .*cut.npy"):
        load_array(_write(tmp_path / "cut.npy", raw[: len(raw) // 2]))
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        load_array(tmp_path / "dir.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(DataError, match=r"holds values of type <U1"):
        load_array(tmp_path / "s.npy")
    np.save(tmp_path / "c.npy", np.array([[1 + 2j, 0]]))
    with pytest.raises(DataError, match="complex numbers"):
        load_array(tmp_path / "c.npy")


def test_bad_arrays_passed_to_a_model(model):
    with pytest.raises(DataError, match="values of type <U1"):
        model(np.array([["0", "1"]]))
    with pytest.raises(DataError, match="complex numbers"):
        model(np.array([[1j, 0]]))
    with pytest.raises(DataError, match=r"variable 'a' \(column 0\) has value inf in row 1, which is not an integer"):
        model(np.array([[0.0, 1.0], [np.inf, 0.0]]))
    with pytest.raises(DataError, match=r"value -inf in row 0"):
        model(np.array([[-np.inf, 1.0]]))


def test_empty_training_evaluation_and_validation_sets_are_refused(model, tmp_path):
    empty = np.zeros((0, 2), dtype=np.int64)
    with pytest.raises(DataError, match="the train data has no rows"):
        Trainer(model, TrainConfig(epochs=1), empty)
    with pytest.raises(DataError, match="the valid data has no rows"):
        Trainer(model, TrainConfig(epochs=1), np.zeros((4, 2), dtype=np.int64), valid=empty)
    np.save(tmp_path / "empty.npy", empty)
    np.save(tmp_path / "x.npy", np.zeros((4, 2), dtype=np.int64))
    spec = tmp_path / "m.pc"
    spec.write_text(BINARY)
    r = runner.invoke(app, ["eval", str(spec), "--data", str(tmp_path / "empty.npy")])
    assert r.exit_code == 2 and "has no rows" in r.output and "0.0000" not in r.output, r.output
    r = runner.invoke(
        app,
        [
            "train",
            str(spec),
            "--data",
            str(tmp_path / "x.npy"),
            "--valid",
            str(tmp_path / "empty.npy"),
            "--epochs",
            "1",
            "-o",
            str(tmp_path / "o.pcz"),
        ],
    )
    assert r.exit_code == 2 and "valid data" in r.output and "has no rows" in r.output, r.output


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00", b"garbage"])
def test_the_cli_prints_a_message_for_unreadable_data_not_aborted(tmp_path, content):
    spec = tmp_path / "m.pc"
    spec.write_text(BINARY)
    path = _write(tmp_path / "x.npy", content)
    for cmd in (
        ["eval", str(spec), "--data", str(path)],
        ["train", str(spec), "--data", str(path), "-o", str(tmp_path / "o.pcz")],
    ):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2, r.output
        assert "error:" in r.output and "x.npy" in r.output and "Aborted" not in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)


# -- saved models -------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path, rng):
    m = pc.compile(random_circuit(rng, num_vars=3, gaussian=True))
    path = tmp_path / "m.pcz"
    pc.save(m, path)
    return path


def _members(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(path, members: dict, out=None):
    out = out or path.with_name("t.pcz")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, v in members.items():
            z.writestr(k, v)
    return out


def _edit_arrays(saved, edit):
    from safetensors.numpy import load, save

    m = _members(saved)
    arrays = load(m["arrays.safetensors"])
    edit(arrays)
    m["arrays.safetensors"] = save(arrays) if arrays else b""
    return _rezip(saved, m)


def test_nan_in_module_state_is_refused(saved):
    def poison(arrays):
        k = next(k for k in sorted(arrays) if k.startswith("state."))
        arrays[k] = arrays[k].copy()
        arrays[k].flat[0] = np.nan

    with pytest.raises(FormatError, match=r"tensor 'state\..*' holds NaN or infinite values"):
        pc.load(_edit_arrays(saved, poison))


def test_a_file_without_tensors_or_with_wrong_shapes_is_refused(saved):
    with pytest.raises(FormatError, match="parameters are missing|tensor .* is missing"):
        pc.load(_edit_arrays(saved, lambda a: a.clear()))

    def reshape(arrays):
        k = "state.sum_logits"
        arrays[k] = np.concatenate([arrays[k], arrays[k][:1]])

    with pytest.raises(FormatError, match=r"tensor 'state.sum_logits' is torch.float32 \(\d+,\); the circuit needs"):
        pc.load(_edit_arrays(saved, reshape))

    def drop_state(arrays):
        del arrays["state.sum_logits"]

    with pytest.raises(FormatError, match=r"the module state lacks tensor 'state.sum_logits'"):
        pc.load(_edit_arrays(saved, drop_state))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda r: r["circuit"]["nodes"][-1].update(children=[999]), r"child id 999 does not exist"),
        (lambda r: r["circuit"]["nodes"][0].update(size="3"), r"node \d+: field 'size' is str '3'; expected int"),
        (lambda r: r["circuit"].update(nodes={"a": 1}), r"field 'nodes' is dict"),
        (lambda r: r["circuit"].update(root=12345), r"root id 12345 is not a node"),
        (lambda r: r["circuit"]["nodes"][0].update(kind="loop"), r"unknown kind 'loop'"),
        (lambda r: r["circuit"]["nodes"][0].update(size=10**9), r"size 1,000,000,000 is beyond the limit"),
    ],
)
def test_tampered_model_records_are_refused_naming_the_field(saved, edit, match):
    m = _members(saved)
    record = json.loads(m["model.json"])
    edit(record)
    m["model.json"] = json.dumps(record)
    with pytest.raises(FormatError, match=match):
        pc.load(_rezip(saved, m))


def test_json_that_is_not_an_object_and_extra_members_are_refused(saved):
    m = _members(saved)
    with pytest.raises(FormatError, match="model.json is not a model record"):
        pc.load(_rezip(saved, {**m, "model.json": "[1, 2]"}))
    with pytest.raises(FormatError, match="member model.json is not valid JSON"):
        pc.load(_rezip(saved, {**m, "model.json": "[" * 100000}))
    for name in ("../x", "payload.pkl"):
        with pytest.raises(FormatError, match=rf"unexpected member '{name}'"):
            pc.load(_rezip(saved, {**m, name: b"\x80\x04K\x01."}))
    assert not (saved.parent.parent / "x").exists()


def test_a_zip_bomb_member_is_refused_before_it_is_inflated(saved, monkeypatch):
    m = _members(saved)
    m["arrays.safetensors"] = b"\0" * (200 << 20)  # 200 MiB of zeros: about 200 KiB on disk
    path = _rezip(saved, m)
    assert path.stat().st_size < 1 << 20
    monkeypatch.setenv("PCC_MEMORY_LIMIT", str(128 << 20))
    with pytest.raises(FormatError, match=r"member arrays.safetensors would inflate to 209,715,200 bytes, beyond"):
        pc.load(path)


def test_damaged_checkpoints_are_refused_by_resume(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 2, (64, 2)))
    spec = tmp_path / "m.pc"
    spec.write_text(BINARY)
    out = tmp_path / "o.pcz"
    args = ["train", str(spec), "--data", str(tmp_path / "x.npy"), "--epochs", "2", "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    ckpt = tmp_path / "o.ckpt.pcz"
    m = _members(ckpt)
    record = json.loads(m["model.json"])
    record["extra"]["train_state"]["history"][0]["train_ll"] = "high"
    _rezip(ckpt, {**m, "model.json": json.dumps(record)}, out=ckpt)
    r = runner.invoke(app, args + ["--resume"])
    assert r.exit_code == 2 and "history entry 0 is not an epoch record" in r.output, r.output
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    r = runner.invoke(app, args + ["--resume"])
    assert r.exit_code == 2 and "is not a pccompile model file, or it is damaged" in r.output, r.output


# -- training arguments ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,match",
    [
        ({"step_size": math.nan}, r"--step-size expects a finite number >= 0 or none, got nan"),
        ({"step_size": -1.0}, r"--step-size expects a finite number >= 0 or none, got -1.0"),
        ({"step_size": 0.0}, r"--step-size must be in \(0, 1\]"),
        ({"step_size": 2.0}, r"--step-size must be in \(0, 1\] .* for optimizer em, got 2.0"),
        ({"step_size": 0.5, "step_size_end": 3.0, "schedule": "linear"}, r"--step-size-end must be in \[0, 1\]"),
        ({"optimizer": "adam", "step_size": math.inf}, r"--step-size expects a finite number >= 0 or none, got inf"),
        ({"optimizer": "adam", "step_size": 0.0}, r"--step-size must be finite and > 0"),
        ({"pseudocount": math.nan}, r"--pseudocount expects a finite number >= 0, got nan"),
        ({"pseudocount": -0.1}, r"--pseudocount expects a finite number >= 0, got -0.1"),
        ({"epochs": 0}, r"--epochs expects an integer in 1..1,000,000, got 0"),
        ({"seed": -1}, r"--seed expects an integer in 0..2\^63-1, got -1"),
        ({"seed": 10**20}, r"--seed expects an integer in 0..2\^63-1, got 100000000000000000000"),
        ({"batch_size": 2**63}, r"--batch-size expects an integer in 1..2\^63-1, got 9223372036854775808"),
        ({"epochs": 1e300}, r"--epochs expects an integer in 1..1,000,000, got 1e\+300"),
    ],
)
def test_training_arguments_are_range_checked(kw, match):
    with pytest.raises(PCError, match=match):
        TrainConfig(**kw)


def test_the_cli_refuses_bad_training_and_eval_arguments(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((8, 2), dtype=np.int64))
    spec = tmp_path / "m.pc"
    spec.write_text(BINARY)
    base = ["train", str(spec), "--data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "o.pcz")]
    for flag, value in (("--step-size", "nan"), ("--step-size", "-1"), ("--step-size", "2"), ("--pseudocount", "nan")):
        r = runner.invoke(app, base + [flag, value])
        assert r.exit_code == 2 and "error:" in r.output, (flag, value, r.output)
    assert not (tmp_path / "o.pcz").exists()
    r = runner.invoke(app, ["eval", str(spec), "--data", str(tmp_path / "x.npy"), "--batch-size", "0"])
    assert r.exit_code == 2 and "--batch-size expects an integer in 1..2^63-1, got 0" in r.output, r.output
    r = runner.invoke(app, ["sample", str(spec), "-n", "0"])
    assert r.exit_code == 2 and "-n expects an integer in 1..1,000,000, got 0" in r.output, r.output


def test_sample_refuses_more_rows_than_memory_holds(tmp_path, monkeypatch):
    spec = tmp_path / "m.pc"
    spec.write_text(BINARY)
    monkeypatch.setenv("PCC_MEMORY_LIMIT", str(1 << 20))  # 1 MiB: a quarter holds 16,384 rows of 2 values
    r = runner.invoke(app, ["sample", str(spec), "-n", "100000", "-o", str(tmp_path / "s.npy")])
    assert (
        r.exit_code == 2 and "-n 100,000 samples of 2 variables need 1.5 MiB, beyond the 0.2 MiB allowed" in r.output
    ), r.output
    assert not (tmp_path / "s.npy").exists()


# -- numerics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_subnormal_gaussian_std_is_floored_not_nan(dtype):
    from pccompile.ir.distributions import MIN_STD

    m = pc.compile("var h : real\nl = gaussian(h, mean=[0], std=[1e-40])\n", dtype=dtype)
    x = torch.tensor([[0.0], [MIN_STD], [float("nan")]], dtype=dtype)
    ll = m(x)
    want = -math.log(MIN_STD) - 0.5 * math.log(2 * math.pi)
    assert torch.isfinite(ll).all(), ll
    torch.testing.assert_close(ll, torch.tensor([want, want - 0.5, 0.0], dtype=dtype), rtol=1e-5, atol=1e-4)
    back = m.to_circuit()  # the floor holds in the circuit it exports, so the model saves and reloads
    verify(back, require_params=True)
    assert float(back.params[back.nodes[back.root].id]["std"][0]) == pytest.approx(MIN_STD, rel=1e-5)


def test_a_checkpoint_from_another_run_or_with_a_foreign_tensor_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 2, (64, 2)))
    spec = tmp_path / "m.pc"
    spec.write_text(BINARY)
    out = tmp_path / "o.pcz"
    args = ["train", str(spec), "--data", str(tmp_path / "x.npy"), "--epochs", "3", "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    r = runner.invoke(app, args[:-4] + ["--epochs", "2", "-o", str(out), "--resume"])
    assert r.exit_code == 2 and "epoch 3 does not fit its history of 3 epochs and this run of 2" in r.output, r.output
    ckpt = tmp_path / "o.ckpt.pcz"

    def extra(arrays):
        arrays["state.stowaway"] = np.zeros(2, np.float32)

    _rezip(ckpt, _members(_edit_arrays(ckpt, extra)), out=ckpt)
    r = runner.invoke(app, args + ["--resume"])
    assert r.exit_code == 2 and "the module state has an unexpected tensor 'state.stowaway'" in r.output, r.output
