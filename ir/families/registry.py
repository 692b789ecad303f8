"""The registry of input families: one prototype per family, keyed by class and found by name.
Everything else derives from it: the DSL's and networkx's family names, the facade's exports,
the Triton kernel's DIST codes (a family's place in `FAMILIES`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Family

FAMILIES: dict[type[Family], Family] = {}
"""Family class -> its prototype (the instance the kernel parts are called on), in
registration order."""

_BY_NAME: dict[str, Family] = {}


REQUIRED_PARTS = (
    "param_shapes", "random_params", "check_params", "from_nx",
    "runtime_empty", "runtime_from_ir", "runtime_to_ir", "runtime_draw",
    "log_probs", "mode", "sample", "stats", "m_step", "triton_tensors",
)  # fmt: skip


def missing_parts(cls) -> list[str]:
    """The parts `cls` leaves as the base's (those raise NotImplementedError)."""
    from ..distributions import Distribution
    from .base import Family

    def own(part: str) -> bool:  # defined below the two bases
        return next(k for k in cls.__mro__ if part in vars(k)) not in (Family, Distribution)

    missing = [p for p in REQUIRED_PARTS if not own(p)]
    if cls.softened and not own("probs"):
        missing.append("probs")
    if not cls.triton_snippet or not cls.triton_doc:
        missing.append("triton_snippet")
    return missing


def register(cls):
    """Class decorator: add a family. Its name must be new, it must give every part
    (missing_parts), and it must be constructible with no arguments (the prototype)."""
    if not cls.name or cls.name in _BY_NAME:
        raise ValueError(f"family name {cls.name!r} is empty or registered twice")
    if missing_parts(cls):
        raise TypeError(f"family '{cls.name}' lacks {', '.join(missing_parts(cls))}")
    proto = cls()
    FAMILIES[cls] = proto
    _BY_NAME[cls.name] = proto
    return cls


def family(name: str) -> Any:
    """The prototype of the family called `name` (an InputPartition's `dist`)."""
    return _BY_NAME[name]


def family_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def triton_code(name: str) -> int:
    """The family's DIST code in the Triton input kernel: its place in the registry."""
    return list(_BY_NAME).index(name)
