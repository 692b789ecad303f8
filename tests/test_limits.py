"""Sizes refused before anything is allocated: the memory budget reads every limit that applies
to the process (RAM, ulimit, cgroup) and names the binding one; passes that build more than they
read state their size first; tiles and blocks larger than a vector cost nothing extra."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pccompile.ir import PCError, ResourceError
from pccompile.ir.limits import _cgroup_headroom, check_memory, memory_budget, memory_limits, parameter_count

import pccompile as pc

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits.pc"


def test_the_budget_is_the_smallest_limit_and_names_it(monkeypatch):
    monkeypatch.delenv("PCC_MEMORY_LIMIT", raising=False)
    limits = memory_limits()
    assert any(src == "physical memory" for _, src in limits)
    assert memory_budget() == min(limits, key=lambda item: item[0])
    monkeypatch.setenv("PCC_MEMORY_LIMIT", str(1 << 30))
    assert memory_budget() == (1 << 30, "PCC_MEMORY_LIMIT")
    with pytest.raises(ResourceError, match=r"100,000,000 parameters, .* 1\.0 GiB are allowed by PCC_MEMORY_LIMIT$"):
        check_memory(100_000_000)


@pytest.mark.parametrize("limit", ["RLIMIT_AS", "RLIMIT_DATA"])
def test_a_process_limit_binds_and_is_named(limit):
    """Under `ulimit -v` (or -d) of 3 GiB, grow{factor=60} on the digits HCLT (3.5 GiB of
    parameters by our count) is refused at once, naming the limit, instead of dying of
    MemoryError part-way."""
    code = (
        "import resource, time, pccompile as pc\n"
        f"resource.setrlimit(resource.{limit}, (3 << 30, resource.getrlimit(resource.{limit})[1]))\n"
        "t = time.perf_counter()\n"
        "try:\n"
        f"    pc.compile({str(DIGITS)!r}, passes='grow{{factor=60}}')\n"
        "except pc.PCError as e:\n"
        "    print(f'{time.perf_counter() - t:.2f}', e)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    seconds, _, message = r.stdout.strip().partition(" ")
    assert f"allowed by the process limit {limit}" in message, r.stdout + r.stderr
    assert "234,334,080 parameters" in message and float(seconds) < 5


@pytest.mark.parametrize("version", [1, 2])
def test_a_cgroup_limit_is_read_less_its_usage(tmp_path, version, monkeypatch):
    monkeypatch.setattr("builtins.open", _only_under(tmp_path, open))
    if version == 2:
        (tmp_path / "memory.max").write_text(f"{4 << 30}\n")
        (tmp_path / "memory.current").write_text(f"{1 << 30}\n")
        assert _cgroup_headroom(str(tmp_path)) == (3 << 30, "the cgroup v2 memory.max")
        (tmp_path / "memory.max").write_text("max\n")
        assert _cgroup_headroom(str(tmp_path)) is None
    else:
        (tmp_path / "memory").mkdir()
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{2 << 30}\n")
        (tmp_path / "memory" / "memory.usage_in_bytes").write_text(f"{1 << 29}\n")
        assert _cgroup_headroom(str(tmp_path)) == ((2 << 30) - (1 << 29), "the cgroup v1 memory.limit_in_bytes")
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "none"
        assert _cgroup_headroom(str(tmp_path)) is None


def _only_under(folder: Path, real_open):
    """open() that finds no /proc/self/cgroup, so the fake cgroup folder is read at its root."""

    def fake(path, *a, **k):
        if not str(path).startswith(str(folder)):
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)

    return fake


def test_grow_states_its_size_and_is_refused_before_allocating():
    circuit = pc.compile(DIGITS).to_circuit()
    from pccompile.passes import Grow

    base = parameter_count(circuit)
    grow = Grow(factor=3)
    inputs = sum(n.size * n.dist.num_cats for n in circuit.nodes.values() if hasattr(n, "dist"))
    root = circuit.nodes[circuit.root]
    root_params = sum(circuit.nodes[c].size for c in root.children)
    # inputs grow by 3, the root's one row reads 3x the columns, every other sum 9x its weights
    assert grow.parameters_after(circuit) == 3 * inputs + 3 * root_params + 9 * (base - inputs - root_params)
    assert parameter_count(Grow(factor=3, noise=0.0).run(circuit)) == grow.parameters_after(circuit)
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match=r"the circuit after pass 'grow\{factor=1000,.*\}' has 64,546,848,000 par"):
        pc.compile(DIGITS, passes="grow{factor=1000}")
    assert time.perf_counter() - t0 < 1.0 + _compile_seconds()
    size = circuit.nodes[next(iter(circuit.nodes))].size
    with pytest.raises(
        ResourceError, match=rf"node '\w+' would have size {size * 4096:,} is beyond the limit of 65,536"
    ):
        Grow(factor=4096).run(circuit)


def _compile_seconds() -> float:
    t0 = time.perf_counter()
    pc.compile(DIGITS)
    return time.perf_counter() - t0


@pytest.mark.parametrize("block", [3, 7, 64, 65536])
def test_tiles_larger_than_the_matrix_are_not_padded(block):
    """prune's tile means and trim's whole blocks, against a loop over the tiles."""
    from passes.prune import _tile_means
    from passes.trim import _whole_blocks

    rng = np.random.default_rng(block)
    score, mask = rng.random((10, 13)), rng.random((10, 13)) < 0.7
    want = np.zeros_like(score)
    for r in range(0, 10, block):
        for c in range(0, 13, block):
            tile = (slice(r, r + block), slice(c, c + block))
            want[tile] = score[tile][mask[tile]].mean() if mask[tile].any() else 0.0
    np.testing.assert_allclose(_tile_means(score, mask, block), want)
    rows = rng.random(11) < 0.2
    blocks = np.array([rows[i - i % block : i - i % block + block].any() for i in range(11)])
    np.testing.assert_array_equal(_whole_blocks(rows, block), blocks)


def test_prune_and_trim_with_a_huge_block_run_at_once():
    t0 = time.perf_counter()
    model = pc.compile(DIGITS, passes="prune{criterion=random,granularity=block,block=65536},trim{block=65536}")
    assert time.perf_counter() - t0 < 10 + _compile_seconds()
    x = np.random.default_rng(0).integers(0, 17, (4, 64))
    assert np.isfinite(model(x).detach().numpy()).all()


@pytest.mark.parametrize(
    "field,value,said",
    [
        ("image", [8, 7], r"meta field 'image' \[8, 7\] has 56 pixels, but the circuit has 64 variables"),
        ("image", [-8, -8], r"meta field 'image' is \[-8, -8\]; expected \[height, width\]"),
        ("image", [10**30, 1], r"meta field 'image' is \[1000000000000000000000000000000, 1\]"),
        ("image", "8x8", r"meta field 'image' is '8x8'"),
        ("name", 5, r"meta field 'name' is 5; expected text"),
    ],
)
def test_tampered_metadata_is_refused_on_load_naming_the_field(tmp_path, field, value, said):
    import json

    from test_errors_inputs import _members, _rezip

    path = tmp_path / "m.pcz"
    pc.save(pc.compile(DIGITS), path)
    m = _members(path)
    record = json.loads(m["model.json"])
    record["circuit"]["meta"][field] = value
    with pytest.raises(PCError, match=said):
        pc.load(_rezip(path, {**m, "model.json": json.dumps(record).encode()}))


@pytest.mark.parametrize(
    "edit,said",
    [
        ({"variables": [999]}, r"region 'Z\[8\]' holds variable 999, which is not in the node's scope"),
        ({"variables": []}, r"region 'Z\[8\]' needs a name and distinct variables"),
        ({"variables": [8, 8]}, r"region 'Z\[8\]' needs a name and distinct variables"),
    ],
)
def test_tampered_regions_are_refused_on_load(tmp_path, edit, said):
    import json

    from test_errors_inputs import _members, _rezip

    path = tmp_path / "m.pcz"
    pc.save(pc.compile(DIGITS), path)
    m = _members(path)
    record = json.loads(m["model.json"])
    assert record["circuit"]["regions"][0]["name"] == "Z[8]"
    record["circuit"]["regions"][0].update(edit)
    with pytest.raises(PCError, match=said):
        pc.load(_rezip(path, {**m, "model.json": json.dumps(record).encode()}))


@pytest.mark.parametrize("shape", [[3, 2, 2], [2, 2, 3], [1, 3, 4], [3, 4]])
def test_sample_grids_draw_every_image_shape(tmp_path, shape):
    from pccompile.io.plots import sample_grid

    xs = np.random.default_rng(0).integers(0, 4, (5, int(np.prod(shape))))
    sample_grid(xs, shape, tmp_path / "g.png", max_value=3)
    assert (tmp_path / "g.png").stat().st_size > 1000
