"""CUDA graphs: the captured steps must not synchronise with the host, and replaying them must
give what eager execution gives.

On the CPU we cannot capture, so the first tests audit every aten op the step issues (with the
Triton kernels themselves, which never synchronise, running unaudited under the interpreter)
and fail on any op that would make the host wait for the device. The last test runs on a GPU."""

import os

ON_GPU = os.environ.get("PCC_TEST_DEVICE", "cpu") == "cuda"  # see tests/test_triton.py
if not ON_GPU:
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
import torch
from helpers import random_circuit
from torch.utils._python_dispatch import TorchDispatchMode

import pccompile as pc
from pccompile.learn import em_step
from pccompile.structures import hclt_from_tree

pytest.importorskip("triton")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# ops that wait for the device (or copy host data in) and so cannot be captured in a graph
SYNCING = {
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "bincount",
    "unique",
    "_unique2",
    "unique_dim",
    "repeat_interleave",
    "is_nonzero",
    "equal",
    "allclose",
    "masked_scatter_",
    "histc",
    "item",
}


class SyncAudit(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.paused = False
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.paused:
            name = func._schema.name.split("::")[-1]
            if name in SYNCING:
                self.found.append(name)
            if name == "lift_fresh" and args[0].dim() > 0:  # host data turned into a tensor (a copy
                self.found.append("tensor from host data")  # in); a Python scalar (dim 0) is fine
            if name.startswith("index") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool
                for a in args
                if isinstance(a, (list, tuple))
                for i in a
            ):
                self.found.append(f"{name} with a boolean index")
        return func(*args, **kwargs)


class Unaudited:
    """The emitted module, with the audit paused while a launcher runs (the interpreter's own
    host work is not what a GPU would do)."""

    def __init__(self, kernels, audit):
        self.kernels, self.audit = kernels, audit

    def __getattr__(self, name):
        fn = getattr(self.kernels, name)

        def call(*a, **k):
            self.audit.paused = True
            try:
                return fn(*a, **k)
            finally:
                self.audit.paused = False

        return call


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PCCOMPILE_CACHE", str(tmp_path_factory.getbasetemp() / "kernels"))


def _models(circuit):
    ref = pc.compile(circuit)
    tri = pc.compile(circuit, backend="triton", triton={"block_b": 16})
    return ref, tri


@pytest.mark.skipif(ON_GPU, reason="the audit runs the kernels in the interpreter")
@pytest.mark.parametrize("kind", ["dense", "sparse", "gaussian"])
def test_em_step_and_forward_issue_no_syncing_op(rng, kind):
    circuit = random_circuit(rng, num_vars=4, sparse=kind == "sparse", gaussian=kind == "gaussian")
    ref, tri = _models(circuit)
    rows = [
        [
            float(rng.integers(v.domain.num_cats)) if v.domain.num_cats else float(rng.normal())
            for v in circuit.variables
        ]
        for _ in range(12)
    ]
    x = torch.tensor(rows)
    x[0, 0] = float("nan")
    xi, xr = tri.encode(x)
    audit = SyncAudit()
    tri.executor.kernels = Unaudited(tri.executor.kernels, audit)
    with audit:
        ll = em_step(tri, xi, xr, 0.3, 0.1)
        with torch.no_grad():
            out = tri.log_prob_encoded(xi, xr)
    assert audit.found == []
    # and the audited step is the real step: same as the torch backend
    expect = em_step(ref, *ref.encode(x), 0.3, 0.1)
    torch.testing.assert_close(ll, expect, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(tri.sum_logits, ref.sum_logits, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(out, ref(x), rtol=1e-4, atol=1e-4)


def test_the_audit_catches_a_syncing_op():
    audit = SyncAudit()
    t = torch.randn(5)
    with audit:
        float(t.sum())
        t[t > 0]
        t[0] = 1.0  # a scalar fill is fine
        t + torch.tensor([1.0, 2, 3, 4, 5])
    assert audit.found == ["_local_scalar_dense", "index with a boolean index", "tensor from host data"]


def test_graphs_are_off_where_they_cannot_run(rng):
    circuit = random_circuit(rng, num_vars=3)
    ref, tri = _models(circuit)
    assert not ref.cuda_graphs  # the torch path repairs underflow with a data-dependent branch
    assert tri.cuda_graphs
    with pytest.raises(pc.ArgumentError, match="float32"):
        pc.compile(circuit, backend="triton", dtype=torch.float64)
    assert pc.compile(circuit, dtype=torch.float64).backend == "torch"  # auto picks the exact path
    tri.double()  # cast after compiling: refused at the first run, with the same message
    with pytest.raises(pc.ArgumentError, match="computes in float32"):
        tri(torch.zeros(2, len(circuit.variables)))
    assert not pc.compile(circuit, backend="triton", cuda_graphs=False).cuda_graphs


@pytest.mark.skipif(not (ON_GPU and torch.cuda.is_available()), reason="needs a CUDA GPU and PCC_TEST_DEVICE=cuda")
def test_replayed_graphs_match_eager_steps_on_gpu():
    root = hclt_from_tree(np.array([-1, 0, 0, 1, 1, 2]), 5, latents=16)
    eager = pc.compile(pc.build(root), backend="triton", device="cuda", cuda_graphs=False)
    graphed = pc.compile(pc.build(root), backend="triton", device="cuda")
    graphed.load_state_dict(eager.state_dict())
    gen = torch.Generator().manual_seed(0)
    for step, b in enumerate([32, 32, 7, 32, 7, 32]):  # two shapes, each captured once, replayed
        x = torch.randint(0, 5, (b, 6), generator=gen).cuda()
        a = 0.5 / (step + 1)
        xi, xr = graphed.encode(x)  # validation waits for the device; the step must not
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = em_step(graphed, xi, xr, a, 0.1)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        expect = em_step(eager, *eager.encode(x), a, 0.1)
        torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(graphed.sum_logits, eager.sum_logits, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(graphed(x), eager(x), rtol=1e-5, atol=1e-4)
    assert len(graphed._graph_caches[("em", 0.1)].graphs) == 2
