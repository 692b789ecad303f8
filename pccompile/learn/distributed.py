"""Data-parallel training on torch.distributed: every rank holds the
whole model and reads its own share of each global mini-batch; what the ranks computed is
summed with all-reduce, so every rank applies the same update and the parameters stay equal
without being broadcast.

- EM: the flows and input statistics of each rank's shard are summed (flattened into one
  buffer per dtype), then every rank runs the same M-step.
- Gradients: each rank back-propagates the summed log-likelihood of its shard; gradients and
  row counts are summed in one buffer and divided by the global row count, which is the
  gradient of the global batch's mean.
- Evaluation: each rank scores a shard of the rows; the sums are all-reduced.

The global batch order is the single-process one (the trainer's seeded permutation), so N
ranks train the same model as one process, up to float rounding.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from pccompile.analysis.flows import FlowStats
from pccompile.ir import ArgumentError, DistributedError
from pccompile.ir.env import env_value


@dataclass(frozen=True)
class Group:
    """This process's place among `world` ranks; `timeout_s` bounds every collective call."""

    rank: int
    world: int
    timeout_s: float = 120.0
    traffic: dict = field(default_factory=lambda: {"calls": 0, "bytes": 0}, compare=False)  # collectives so far
    # check_same_data's fingerprint of each split array seen, by id (the array kept, so the id is
    # not reused): the CLI, LVD and the trainer each check the same arrays, hashed once
    hashed: dict = field(default_factory=dict, compare=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """The rows of an n-row global batch this rank reads: contiguous parts of equal size,
        the first n % world ranks one row more (a rank may get none)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def sum_(self, tensors: list[torch.Tensor]) -> None:
        """All-reduce (sum) every tensor in place: one flat buffer per dtype, one call each."""
        self._flat(tensors, lambda flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM))

    def broadcast_(self, tensors: list[torch.Tensor], src: int = 0) -> None:
        """Give every rank rank `src`'s values of the tensors, in place (one call per dtype)."""
        self._flat(tensors, lambda flat: dist.broadcast(flat, src))

    def _flat(self, tensors: list[torch.Tensor], collective) -> None:
        """Run `collective` on one flat buffer per dtype of the tensors, then copy back."""
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            self.traffic["calls"] += 1
            self.traffic["bytes"] += flat.numel() * flat.element_size()
            try:
                collective(flat)
            except RuntimeError as e:  # gloo and NCCL report a dead or silent peer this way
                raise self._lost(e) from None
            offset = 0
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()

    def keep_alive(self):
        """For rank 0 while it alone works (trains the LVD encoder) and the other ranks wait in
        wait_for_main(): the returned function, called often, tells them every quarter of the
        timeout that rank 0 lives, so a long job is not taken for a hang and a hang still is.
        The first call beats at once: the work before it (the job's set-up) is not covered, and
        must fit in one timeout."""
        last = -float("inf")

        def beat() -> None:
            nonlocal last
            if time.monotonic() - last >= self.timeout_s / 4:
                self.broadcast_([self._flag(0.0)])
                last = time.monotonic()

        return beat

    def release(self) -> None:
        """Rank 0: the job the others wait for is done."""
        self.broadcast_([self._flag(1.0)])

    def wait_for_main(self) -> None:
        """Ranks other than 0: wait, one timeout per heartbeat, until rank 0 releases them."""
        while True:
            flag = self._flag(0.0)
            self.broadcast_([flag])
            if float(flag.item()) == 1.0:
                return

    def _flag(self, value: float) -> torch.Tensor:
        on_gpu = dist.get_backend() == "nccl"  # NCCL moves CUDA tensors only
        return torch.tensor([value], device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu")

    def check_in_sync(self, tensors, when: str) -> None:
        """Every rank must hold the values rank 0 holds (the all-reduced updates keep them so).
        Rank 0's checksums (sum and sum of squares per tensor) are broadcast, each rank compares
        its own, and the ranks that differ are named to all: a hook or encoder that broke the
        lockstep is found where it happened, not later as a wrong model or a hang."""
        tensors = [t.detach() for t in tensors if t.numel()]
        if not tensors:
            return
        device = tensors[0].device  # one device for all (NCCL moves CUDA tensors only)
        mine = torch.stack([v.to(device) for t in tensors for v in (t.double().sum(), t.double().square().sum())])
        ref = mine.clone()
        self.broadcast_([ref])
        same = bool(((mine == ref) | (torch.isnan(mine) & torch.isnan(ref))).all())
        flags = torch.zeros(self.world, dtype=torch.float64, device=mine.device)
        flags[self.rank] = 0.0 if same else 1.0
        self.sum_([flags])
        off = [r for r in range(self.world) if flags[r] > 0]
        if off:
            raise DistributedError(
                f"rank {self.rank} of {self.world}: {when}, rank(s) {', '.join(map(str, off))} hold other "
                "parameters than rank 0. Something ran differently on them (a hook, an encoder or data that "
                "depends on the rank, or a global random number generator)"
            )

    def check_same_data(self, splits: dict, model=None, settings=None) -> None:
        """Before the first step: every rank must hold the same data, model and settings, since
        each reads its shard of every global batch of the whole set and the ranks meet in a
        collective after every step. Each rank's fingerprint of every split (rows, columns,
        element type, a content hash of the whole set and of each rank's shard of it), of the
        model's tensors (names and shapes) and variable types, and of the settings is gathered
        by all; a difference is one DistributedError, the same on every rank, naming the ranks
        and what differs. Unequal row counts would otherwise abort inside gloo; rank-dependent
        files of one shape would train silently wrong. An array checked before is not hashed
        again; the gather (one small collective) runs every time."""
        facts = _fingerprints(splits, model, settings, self._split_fact)
        mine = torch.tensor([v for f in facts for v in f[1]], dtype=torch.int64).to(self._flag(0.0).device)
        everyone = [torch.zeros_like(mine) for _ in range(self.world)]
        try:
            dist.all_gather(everyone, mine)
        except RuntimeError as e:
            raise self._lost(e) from None
        problems = _disagreements(facts, [t.cpu().tolist() for t in everyone])
        if problems:
            raise DistributedError(
                f"rank {self.rank} of {self.world}: the ranks disagree before training: {'; '.join(problems)}. "
                "Every rank reads the whole data set and trains on its shard of each batch: give every "
                "rank the same files and settings"
            )

    def _split_fact(self, x) -> tuple[int, ...]:
        if x is None:
            return _split_numbers(None, self.world)
        if id(x) not in self.hashed:
            self.hashed[id(x)] = (x, _split_numbers(x, self.world))
        return self.hashed[id(x)][1]

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
        try:
            dist.barrier()
        except RuntimeError as e:
            raise self._lost(e) from None

    def _lost(self, e: RuntimeError) -> DistributedError:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        return DistributedError(
            f"rank {self.rank} of {self.world}: the other ranks did not all answer within "
            f"{self.timeout_s:g} s (one died or hangs): {first}. Rerun with --resume to continue "
            "from the last checkpoint, on any number of processes"
        )

    def reduce_stats(self, stats: FlowStats) -> FlowStats:
        """The flows, input statistics and row count of the global batch, from every rank's
        (the `reduce` of learn.em). The log-likelihood stays this rank's: the trainer sums those
        once per epoch."""
        # the row count rides in the flows' buffer (one call fewer per step) while that dtype
        # holds it exactly: float32 to 2**24 rows
        exact = stats.sum_flows.dtype == torch.float64 or stats.rows * self.world < 2**24
        dtype = stats.sum_flows.dtype if exact else torch.float64
        rows = torch.tensor([float(stats.rows)], dtype=dtype, device=stats.sum_flows.device)
        self.sum_([stats.sum_flows, *(t for part in stats.inputs for t in part.values()), rows])
        return FlowStats(stats.sum_flows, stats.inputs, stats.log_likelihood, int(rows.item()), stats.log_weights)

    def reduce_grads(self, params, rows: int) -> None:
        """Sum the gradients of `params` (of each rank's summed log-likelihood) and the ranks'
        row counts in one buffer, then divide the gradients by the global count: the gradient
        of the global batch's mean."""
        grads = [p.grad for p in params if p.grad is not None]
        count = torch.tensor([float(rows)], dtype=grads[0].dtype, device=grads[0].device)
        self.sum_([*grads, count])
        total = float(count.item())
        for g in grads:
            g.div_(max(total, 1.0))


_LABELS = {"train": "training", "valid": "validation", "test": "test"}


def _digest(part) -> int:
    """A 63-bit content hash (blake2b) of an array or text, as an int64 a collective can carry."""
    data = part.encode() if isinstance(part, str) else np.ascontiguousarray(part).view(np.uint8).reshape(-1).data
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def _split_numbers(x, world: int) -> tuple[int, ...]:
    """A split's fingerprint, as _disagreements reads it: rows, columns, element type, a hash of
    the whole set, then the hash of every rank's shard of it (so each rank's own shard is
    compared with rank 0's view of it). The shards cover every row once, so the whole set's
    hash is taken over theirs, in one pass over the data. None (no such split) has the same
    length: all_gather needs equal sizes."""
    if x is None:
        return (-1, 0, 0, 0, *([0] * world))
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)  # LVD takes tensors too
    cols = int(np.prod(x.shape[1:], dtype=np.int64)) if x.ndim > 1 else 1
    shards = tuple(_digest(x[Group(r, world).shard(len(x))]) for r in range(world))
    return (len(x), cols, _digest(x.dtype.str), _digest(np.array(shards, np.int64)), *shards)


def _fingerprints(splits: dict, model, settings, split_numbers) -> list[tuple[str, tuple[int, ...]]]:
    """(what, numbers) per fact the ranks must agree on: each split by `split_numbers(x)`, the
    model's tensor shapes and variable types, and the settings, as hashes."""
    facts = [(f"split:{name}", split_numbers(x)) for name, x in splits.items()]
    shapes = "" if model is None else ";".join(f"{k}{tuple(v.shape)}" for k, v in model.state_dict().items())
    cats = np.zeros(0, np.int64) if model is None else np.asarray(model.program.var_cats, dtype=np.int64)
    return facts + [("model", (_digest(shapes), _digest(cats))), ("settings", (_digest(repr(settings)),))]


def _disagreements(facts, gathered: list[list[int]]) -> list[str]:
    """What each rank holds differently from rank 0, in words."""
    problems = []
    for rank, numbers in enumerate(gathered[1:], start=1):
        ref, pos = gathered[0], 0
        for what, mine in facts:
            a, b = ref[pos : pos + len(mine)], numbers[pos : pos + len(mine)]
            pos += len(mine)
            if a == b:
                continue
            if what.startswith("split:"):
                label = _LABELS.get(what[6:], what[6:])
                if min(a[0], b[0]) < 0:
                    problems.append(
                        f"rank {rank} has {'no' if b[0] < 0 else 'its own'} {label} data, rank 0 {'none' if a[0] < 0 else 'has'}"
                    )
                elif a[0] != b[0] or a[1] != b[1]:
                    problems.append(
                        f"rank {rank} has {b[0]:,} {label} rows of {b[1]} values, rank 0 {a[0]:,} of {a[1]}"
                    )
                elif a[2] != b[2]:
                    problems.append(f"rank {rank}'s {label} data are of another element type than rank 0's")
                elif a[3] != b[3] or a[4 + rank] != b[4 + rank]:
                    problems.append(f"rank {rank}'s {label} data hold other values than rank 0's ({a[0]:,} rows each)")
            elif what == "model":
                problems.append(f"rank {rank} compiled another circuit than rank 0 (other tensors or variable types)")
            else:
                problems.append(f"rank {rank} runs with other training settings than rank 0")
    return problems


def join(backend: str | None = None, timeout_s: float | None = None) -> Group:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
    gloo on the CPU, NCCL when CUDA is there, unless `backend` says. A rank that does not
    answer within `timeout_s` (default: $PCC_DIST_TIMEOUT, else 120) makes collective calls
    fail with a DistributedError instead of hanging."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ArgumentError("--distributed runs under torchrun (RANK and WORLD_SIZE are not set)")
    if timeout_s is None:
        timeout_s = env_value("PCC_DIST_TIMEOUT")
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Group(dist.get_rank(), dist.get_world_size(), timeout_s)


def leave() -> None:
    """Wait for every rank, then tear the process group down. Without it a rank whose
    interpreter exits while gloo's threads still run can abort ("terminate called without an
    active exception"), and its exit code fails the run."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
