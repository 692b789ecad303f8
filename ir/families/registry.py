"""The registry of input families: one prototype per family, keyed by class and found by name.
Everything else derives from it: the DSL's and networkx's family names, the facade's exports,
the Triton kernel's DIST codes (a family's place in `FAMILIES`)."""

from __future__ import annotations

FAMILIES: dict[type, object] = {}
"""Family class -> its prototype (the instance the kernel parts are called on), in
registration order."""

_BY_NAME: dict[str, object] = {}


def register(cls):
    """Class decorator: add a family. Its name must be new, and it must be constructible with
    no arguments (the prototype)."""
    if not cls.name or cls.name in _BY_NAME:
        raise ValueError(f"family name {cls.name!r} is empty or registered twice")
    proto = cls()
    FAMILIES[cls] = proto
    _BY_NAME[cls.name] = proto
    return cls


def family(name: str):
    """The prototype of the family called `name` (an InputPartition's `dist`)."""
    return _BY_NAME[name]


def family_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def triton_code(name: str) -> int:
    """The family's DIST code in the Triton input kernel: its place in the registry."""
    return list(_BY_NAME).index(name)
