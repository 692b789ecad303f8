"""Pass protocol, name registry and pipeline parsing (`-p normalize,prune{fraction=0.5}`).

A pass is a frozen dataclass whose fields are its options and whose `run` maps a Circuit to a
Circuit. The registry maps a pass's `name` to its class so the CLI can build pipelines from text.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from pccompile.ir import ArgumentError, Circuit
from pccompile.ir.limits import check_memory
from pccompile.ir.options import check_fields, parse_options


@dataclasses.dataclass
class PassContext:
    """What analyses hand the passes, beside the circuit: named results such as per-edge flows
    for pruning (`analyses["edge_flows"][node_id]`, an array [size, K]). They are neither part
    of the circuit (nor its JSON) nor a pass's printed options, and a pass reads them here."""

    analyses: dict[str, Any] = dataclasses.field(default_factory=dict)
    # computes an analysis of the circuit a pass is about to see (the driver supplies it, with data)
    provider: Callable[[str, Circuit, Any], Any] | None = None  # (analysis, circuit, the pass)

    def require(self, name: str, pass_name: str) -> Any:
        if name not in self.analyses:
            how = ANALYSES.get(name, "the driver computes: run the pass through")
            raise ArgumentError(
                f"pass '{pass_name}' needs the '{name}' analysis, which {how} pccompile.compile or pccompile.run_passes"
            )
        return self.analyses[name]


ANALYSES = {
    "edge_flows": "needs data: pass data=x to",  # flows of each edge on the rows given
    "evidence_log_probs": "the driver computes: run the pass through",  # inputs at the evidence
}
"""The analyses a pass may need, and what the driver needs to compute each."""


@dataclasses.dataclass(frozen=True)
class Pass:
    """A circuit rewrite: a frozen dataclass whose fields are its options; `run` maps a circuit
    (and the analyses in `ctx`, when it needs any) to a new circuit."""

    name: ClassVar[str] = ""

    def __post_init__(self):
        """Every option is checked against its declared type and range (pccompile.ir.options),
        from a pipeline's text and from the API alike."""
        check_fields(self, f"pass '{self.name}': option '{{name}}'")

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:  # pragma: no cover - interface
        raise NotImplementedError

    def parameters_after(self, circuit: Circuit) -> int | None:
        """How many parameters the rewritten circuit will have, from `circuit`'s shape alone, for
        a pass that can build more than it reads (None: no more than `circuit` has)."""
        return None

    def check_resources(self, circuit: Circuit) -> None:
        """Refuse at once, before allocating, a rewrite whose result would not fit in memory."""
        planned = self.parameters_after(circuit)
        if planned is not None:
            check_memory(planned, what=f"the circuit after pass '{self}'")

    def __str__(self) -> str:
        opts = ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return f"{self.name}{{{opts}}}" if opts else self.name


_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by its name in pipelines."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Pass]]:
    return dict(_REGISTRY)


_ITEM = re.compile(r"\s*([A-Za-z_][\w-]*)\s*(?:\{([^}]*)\})?\s*(?:,|$)")


def parse_pipeline(text: str) -> list[Pass]:
    """Parse `a,b{x=1,y=2}` into pass objects; unknown names and options name what was expected."""
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise ArgumentError(
                f"pipeline '{text}': cannot read from column {pos + 1}; expected NAME or NAME{{opt=value,...}}"
            )
        name, opts = m.group(1), m.group(2)
        if name not in _REGISTRY:
            raise ArgumentError(f"unknown pass '{name}'; known passes: {', '.join(sorted(_REGISTRY))}")
        passes.append(parse_options(_REGISTRY[name], opts or "", f"pass '{name}'"))
        pos = m.end()
    return passes


class PassManager:
    """Runs passes in order; `trace(pass, before, after)` sees every step (for `pcc show`)."""

    def __init__(self, passes: Iterable[Pass]):
        self.passes = list(passes)

    def run(
        self,
        circuit: Circuit,
        trace: Callable[[Pass, Circuit, Circuit], None] | None = None,
        ctx: PassContext | None = None,
    ) -> Circuit:
        ctx = ctx or PassContext()
        for p in self.passes:
            for name in getattr(p, "needs", ()):  # analyses of the circuit as this pass sees it
                if ctx.provider is not None:
                    ctx.analyses[name] = ctx.provider(name, circuit, p)
            p.check_resources(circuit)
            # a pass whose run takes no context (run(self, circuit)) is called without one
            takes_ctx = "ctx" in inspect.signature(p.run).parameters
            after = p.run(circuit, ctx) if takes_ctx else p.run(circuit)
            if trace is not None:
                trace(p, circuit, after)
            circuit = after
        return circuit
