"""The `pcc` command line: check, show, eval; errors exit 2 with a message, never a traceback."""

import numpy as np
import pytest
from typer.testing import CliRunner

from pccompile.cli import app

runner = CliRunner()
EX = "examples/mixture.pc"


def test_check_prints_summary():
    r = runner.invoke(app, ["check", EX])
    assert r.exit_code == 0, r.output
    for word in ("variables", "sum edges", "parameters", "depth", "partitions", "passes: vectorize", "ok"):
        assert word in r.output


def test_show_ir_lists_every_node_vector_with_its_kind_and_children():
    r = runner.invoke(app, ["show", EX, "--ir"])
    assert r.exit_code == 0, r.output
    assert "Circuit(vars=3, node_vectors=5, nodes=9, sum_edges=2, root='root')" in r.output
    for line in ("la[2] = input   bernoulli(a)", "lb[2] = input   categorical(b)", "lh[2] = input   gaussian(h)"):
        assert line in r.output
    assert "comp[2] = product la, lb, lh" in r.output and "root[1] = sum     comp" in r.output


def test_show_program_lists_the_layers_and_their_rows():
    r = runner.invoke(app, ["show", EX, "--program"])
    assert r.exit_code == 0, r.output
    assert "program: 11 rows, 3 variables, 3 layers, 2 sum weights, root row 10" in r.output
    assert "bernoulli: rows 2..3 (2 nodes)" in r.output and "gaussian: rows 6..7 (2 nodes)" in r.output
    assert "layer   1 product" in r.output and "layer   2 sum" in r.output


def test_show_dsl_prints_a_program_that_compiles_to_the_same_distribution(tmp_path):
    import pccompile as pc

    r = runner.invoke(app, ["show", EX, "--dsl"])
    assert r.exit_code == 0, r.output
    printed = tmp_path / "printed.pc"
    printed.write_text(r.output)
    x = pc.compile(EX).sample(32, seed=1)
    np.testing.assert_allclose(pc.compile(printed)(x).detach().numpy(), pc.compile(EX)(x).detach().numpy(), atol=1e-5)


def test_eval_reports_likelihood(tmp_path):
    x = np.array([[0, 2, 0.5], [1, 0, -1.0]], dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    r = runner.invoke(app, ["eval", EX, "--data", str(tmp_path / "x.npy")])
    assert r.exit_code == 0, r.output
    import math

    def normal(v, m, s):
        return math.exp(-0.5 * ((v - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    p1 = 0.4 * 0.9 * 0.5 * normal(0.5, -1, 0.5) + 0.6 * 0.2 * 0.1 * normal(0.5, 2, 1)
    p2 = 0.4 * 0.1 * 0.2 * normal(-1, -1, 0.5) + 0.6 * 0.8 * 0.6 * normal(-1, 2, 1)
    assert f"{(math.log(p1) + math.log(p2)) / 2:.4f}" in r.output


def test_errors_are_messages(tmp_path):
    bad = tmp_path / "bad.pc"
    bad.write_text("var a : binary\nla = sum(\n")
    r = runner.invoke(app, ["check", str(bad)])
    assert r.exit_code == 2
    assert f"{bad}:2:10" in r.output and "Traceback" not in r.output
    x = np.array([[5, 0, 0.0]])
    np.save(tmp_path / "x.npy", x)
    r = runner.invoke(app, ["eval", EX, "--data", str(tmp_path / "x.npy")])
    assert r.exit_code == 2 and "variable 'a'" in r.output and "row 0" in r.output


def test_help_teaches():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "Examples" in r.output
    r = runner.invoke(app, ["eval", "--help"])
    assert "Example" in r.output


def test_emit_prints_the_kernels_and_their_launches():
    r = runner.invoke(app, ["emit", EX])
    assert r.exit_code == 0, r.output
    assert "def forward(mars, logw, idx, B, complete=False):" in r.output and "sum_fwd[(" in r.output


def test_emit_compiles_for_a_gpu_without_one(tmp_path, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    r = runner.invoke(app, ["emit", EX, "--compile-for", "sm_90"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "compiled for sm_90" in r.output and "sum_bwd" in r.output and "spill bytes" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--compile-for", "90x"], "expects an architecture like sm_90"),
        (["--precision", "fp64"], "unknown precision 'fp64'"),
    ],
)
def test_emit_option_errors_are_messages(args, message):
    r = runner.invoke(app, ["emit", EX, *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_show_runs_prune_on_data_and_shows_what_was_kept(tmp_path):
    x = np.random.default_rng(0).integers(0, 3, size=(200, 3)).astype(np.float64)
    x[:, 0] = x[:, 0] % 2
    x[:, 2] = np.random.default_rng(1).normal(size=200)
    np.save(tmp_path / "x.npy", x)
    r = runner.invoke(
        app, ["show", "examples/sparse.pc", "-p", "prune{fraction=0.5}", "--data", str(tmp_path / "x.npy")]
    )
    assert r.exit_code == 2 and "is not an integer category" in r.output, r.output  # c is categorical(3)
    good = np.random.default_rng(0).integers(0, 2, size=(200, 3))
    np.save(tmp_path / "g.npy", good)
    before = runner.invoke(app, ["show", "examples/sparse.pc"]).output
    r = runner.invoke(
        app, ["show", "examples/sparse.pc", "-p", "prune{fraction=0.5}", "--data", str(tmp_path / "g.npy")]
    )
    assert r.exit_code == 0, r.output
    edges = [int(line.split("sum_edges=")[1].split(",")[0]) for line in (before, r.output)]
    assert edges[1] < edges[0]
    r = runner.invoke(app, ["show", "examples/sparse.pc", "-p", "prune"])
    assert r.exit_code == 2 and "needs the 'edge_flows' analysis, which needs data" in r.output
