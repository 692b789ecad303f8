"""The environment variables pccompile reads: each declared once with its type and range, and
read through the one typed converter, so a bad value is one line naming the variable and what
it accepts instead of a traceback wherever it happens to be read first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

from .errors import ArgumentError
from .options import Range, Refused, convert, describe, shown


@dataclass(frozen=True)
class EnvVar:
    name: str
    kind: Any
    default: Any
    help: str


VARIABLES = {
    v.name: v
    for v in (
        EnvVar(
            "PCC_DIST_TIMEOUT",
            Annotated[float, Range(1, 7 * 86400)],
            120.0,
            "seconds a data-parallel rank waits for the others before it reports them lost",
        ),
        EnvVar(
            "PCC_MEMORY_LIMIT",
            Annotated[int, Range(1, 2**62)],
            None,
            "bytes the size checks allow (default: the smallest of RAM, the process's and the cgroup's limits)",
        ),
        EnvVar("PCC_CACHE", str, None, "folder of the LVD encoders' cache (default ~/.cache/pccompile)"),
        EnvVar(
            "PCCOMPILE_CACHE",
            str,
            None,
            "folder of the compiled Triton and CPU kernels' cache (default ~/.cache/pccompile)",
        ),
        EnvVar("PCC_DEBUG", bool, False, "check every lowered Program (verify_program)"),
        EnvVar("LOCAL_RANK", Annotated[int, Range(0, 1 << 16)], 0, "torchrun: this process's GPU on its machine"),
    )
}


def env_value(name: str):
    """The variable's value, converted, or its default when it is unset; an ArgumentError names
    the variable, the value and what is accepted. Unset and empty are the same."""
    var = VARIABLES[name]
    text = os.environ.get(name, "")
    if text == "":
        return var.default
    try:
        value = convert(text, var.kind)
    except Refused:
        raise ArgumentError(f"environment variable {name} expects {describe(var.kind)}, got {shown(text)}") from None
    return value
