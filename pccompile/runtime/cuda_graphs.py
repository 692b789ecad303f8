"""CUDA-graph capture of a step function, one graph per input signature (batch size, dtypes).

A deep circuit is a long chain of small kernel launches (one per layer), so on the GPU its time
goes to launching, not computing. Captured once, the whole chain replays as one graph launch.

`GraphCache(fn)` calls fn(*tensors) for real the first time it sees a signature (that call also
compiles the Triton kernels), then captures it; later calls copy the inputs into the captured
buffers and replay. So every call does exactly one step. Outputs are the captured buffers,
overwritten by the next replay: use or copy them before the next call.

Requirements on fn, met by the forward pass, the flows and the EM update (tests check that they
issue no synchronising op): no host synchronisation (.item(), bool(tensor), boolean indexing,
data-dependent shapes), and parameters updated in place. Moving the module (`.to()`) invalidates
the graphs; CompiledCircuit clears them then.

All graphs of one cache share a memory pool. That is safe here because they run one at a time on
one stream and every tensor that outlives a replay (captured inputs and outputs) stays referenced
by the cache, so no graph's intermediates can be placed over another's live buffers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _signature(args) -> tuple:
    return tuple(None if a is None else (tuple(a.shape), a.dtype, a.device) for a in args)


class GraphCache:
    def __init__(self, fn: Callable):
        self.fn = fn
        self.graphs: dict[tuple, tuple] = {}  # signature -> (graph, captured inputs, captured outputs)
        self.pool = None

    def __call__(self, *args):
        if not any(a is not None and a.is_cuda for a in args):
            return self.fn(*args)
        key = _signature(args)
        entry = self.graphs.get(key)
        if entry is None:
            return self._capture(key, args)
        graph, inputs, outputs = entry
        for dst, src in zip(inputs, args):
            if dst is not None:
                dst.copy_(src)
        graph.replay()
        return outputs

    def _capture(self, key, args):
        inputs = tuple(None if a is None else a.clone() for a in args)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # the real call: warms up allocator and kernels
            result = self.fn(*args)
        torch.cuda.current_stream().wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):  # recorded, not executed
            outputs = self.fn(*inputs)
        self.graphs[key] = (graph, inputs, outputs)
        return result
