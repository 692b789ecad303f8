"""Typed option values: the one converter behind every option a user writes or passes.

Pass options (`grow{factor=2}`), the learners' settings (`--prune-grow rounds=3`, `--lvd`,
`--compress`), the DSL templates' arguments and the environment variables all declare their
type here and are converted and range-checked by `convert`, so that every bad value is refused
the same way: one line naming the option, the value and what is allowed.

A type is `bool`, `int`, `float`, `str`, a `Literal[...]`, `X | None`, `tuple[X, ...]` or a
union of these, with a range attached by `Annotated[int, Range(1, 64)]`. Values arrive as text
(command lines, environment) or as Python values (the DSL's literals, the API):

- an integer is written in ASCII digits (`1e3`, `2.0`, `²` are not integers) and, without a
  range of its own, must fit in 64 bits, since numpy and torch take nothing wider;
- a number is finite unless its range reaches infinity; NaN is never a value;
- `none` (any case) is the text of None, for an optional option;
- a tuple is written `28x28` as text, or given as a list or tuple.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Annotated, Any, Literal, Union

from .errors import ArgumentError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?inf(?:inity)?|[+-]?nan", re.I | re.A)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a number may take: lo <= v <= hi (either side open, or absent)."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False

    def admits(self, v: float) -> bool:
        if self.lo is not None and (v < self.lo or (self.open_lo and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.open_hi and v == self.hi)))

    def text(self, integer: bool) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if integer and not (self.open_lo or self.open_hi):
            if self.lo is not None and self.hi is not None:
                return f"in {lo}..{hi}"
            return f">= {lo}" if self.lo is not None else f"<= {hi}" if self.hi is not None else ""
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.open_lo else '['}{lo}, {hi}{')' if self.open_hi else ']'}"
        if self.lo is not None:
            return f"{'>' if self.open_lo else '>='} {lo}"
        return f"{'<' if self.open_hi else '<='} {hi}" if self.hi is not None else ""


SEED_RANGE = Range(0, INT64_MAX)
Seed = Annotated[int, SEED_RANGE]
Count = Annotated[int, Range(0, INT64_MAX)]  # 0, 1, 2, ...
Positive = Annotated[int, Range(1, INT64_MAX)]
Fraction = Annotated[float, Range(0, 1)]
NonNegative = Annotated[float, Range(0, None)]


class Refused(ValueError):
    """A value that does not fit a type; `expected` says what would (internal to this module's
    callers, who add which option it was)."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v in (INT64_MAX, INT64_MIN):
        return "2^63-1" if v > 0 else "-2^63"
    return f"{int(v):,}" if float(v).is_integer() and abs(v) < 2**64 else f"{v:g}"


def _split(kind) -> tuple[Any, Range | None]:
    """(bare type, its range) of a possibly Annotated type."""
    if typing.get_origin(kind) is Annotated:
        base, *extra = typing.get_args(kind)
        return base, next((e for e in extra if isinstance(e, Range)), None)
    return kind, None


def _alternatives(kind) -> tuple | None:
    if typing.get_origin(kind) in (Union, types.UnionType):
        return typing.get_args(kind)
    return None


def describe(kind) -> str:
    """What a value of `kind` must be, in words: 'an integer in 1..64', 'one of edge, block'."""
    alts = _alternatives(kind)
    if alts is not None:
        return " or ".join(describe(a) for a in alts)
    base, rng = _split(kind)
    if base is type(None):
        return "none"
    if typing.get_origin(base) is Literal:
        words = [str(a) for a in typing.get_args(base)]
        return words[0] if len(words) == 1 else f"one of {', '.join(words)}"
    if base is bool:
        return "true or false (1 or 0)"
    if base is str:
        return "text"
    if typing.get_origin(base) is tuple:
        return f"a list of values (such as [28, 28], or 28x28 as text), each {describe(typing.get_args(base)[0])}"
    if base is int:
        rng = rng or Range(INT64_MIN, INT64_MAX)
        return f"an integer {rng.text(True)}".rstrip()
    if base is float:
        rng = rng or Range()
        finite = not (rng.hi == math.inf or rng.lo == -math.inf)
        return f"a {'finite ' if finite else ''}number {rng.text(False)}".rstrip()
    return getattr(base, "__name__", str(base))


def convert(value, kind):
    """`value` (text, or a Python value) as `kind`; raises Refused when it does not fit."""
    alts = _alternatives(kind)
    if alts is not None:
        for alt in alts:
            try:
                return convert(value, alt)
            except Refused:
                continue
        raise Refused(describe(kind))
    base, rng = _split(kind)
    converter = _CONVERTERS.get(base) or _CONVERTERS.get(typing.get_origin(base))
    if converter is None:
        raise TypeError(f"no converter for options of type {kind!r}")
    return converter(value, base, rng, kind)


def _none(value, base, rng, kind):
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    raise Refused(describe(kind))


def _literal(value, base, rng, kind):
    for choice in typing.get_args(base):
        if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
            return choice
    raise Refused(describe(kind))


def _bool(value, base, rng, kind):
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    elif isinstance(value, bool) or (_is_int(value) and int(value) in (0, 1)):
        return bool(value)
    raise Refused(describe(kind))


def _str(value, base, rng, kind):
    if isinstance(value, str):
        return value
    raise Refused(describe(kind))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith(("int", "uint"))


def _int(value, base, rng, kind):
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        out = int(value.strip())
    elif _is_int(value) and not isinstance(value, str):
        try:
            out = int(value)
        except (TypeError, ValueError):
            raise Refused(describe(kind)) from None
    else:
        raise Refused(describe(kind))
    if not (rng or Range(INT64_MIN, INT64_MAX)).admits(out) or not INT64_MIN <= out <= INT64_MAX:
        raise Refused(describe(kind))
    return out


def _float(value, base, rng, kind):
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        out = float(value.strip())
    elif isinstance(value, (int, float)) and not isinstance(value, bool) or _is_int(value):
        try:
            out = float(value)
        except (OverflowError, TypeError, ValueError):
            raise Refused(describe(kind)) from None
    elif type(value).__name__.startswith("float"):  # numpy floats
        out = float(value)
    else:
        raise Refused(describe(kind))
    rng = rng or Range()
    infinite_ok = rng.hi == math.inf or rng.lo == -math.inf
    if math.isnan(out) or (math.isinf(out) and not infinite_ok) or not rng.admits(out):
        raise Refused(describe(kind))
    return out


def _tuple(value, base, rng, kind):
    item = typing.get_args(base)[0]
    if isinstance(value, str):
        parts = [p for p in re.split(r"[x×]", value.strip())]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise Refused(describe(kind))
    if not parts or any(isinstance(p, str) and not p.strip() for p in parts):
        raise Refused(describe(kind))
    try:
        return tuple(convert(p, item) for p in parts)
    except Refused:
        raise Refused(describe(kind)) from None


_CONVERTERS = {
    type(None): _none,
    Literal: _literal,
    bool: _bool,
    str: _str,
    int: _int,
    float: _float,
    tuple: _tuple,
}


def shown(value) -> str:
    """A value as an error message quotes it: text in quotes, anything else by repr, kept short."""
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 40 else text[:37] + "..."


def option_value(value, kind, what: str):
    """`value` as `kind`, or an ArgumentError '<what> expects <description>, got <value>'."""
    try:
        return convert(value, kind)
    except Refused as e:
        raise ArgumentError(f"{what} expects {e.expected}, got {shown(value)}") from None


def option_types(cls) -> dict[str, Any]:
    """Each field of an options dataclass with its declared type, Annotated ranges included."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_fields(obj, what) -> None:
    """Refuse an options dataclass built with a field its type does not admit. `what` names
    the option in the message: a format string over {name} ("pass 'grow': option '{name}'") or
    a function of the name. For a __post_init__: values from the API are checked as strictly
    as parsed ones."""
    for name, kind in option_types(type(obj)).items():
        value = getattr(obj, name)
        converted = option_value(value, kind, what(name) if callable(what) else what.format(name=name))
        if converted != value or type(converted) is not type(value):
            object.__setattr__(obj, name, converted)  # a numpy int or an int for a float, made exact


def _takes_list(kind) -> bool:
    """Whether `kind` (or one of its alternatives) is a tuple type."""
    return any(typing.get_origin(_split(k)[0]) is tuple for k in (_alternatives(kind) or (kind,)))


def split_option(item: str) -> tuple[str, str | None]:
    """'key=value' as (key, value); (item, None) without '='."""
    key, sep, value = item.partition("=")
    return (key.strip(), value.strip()) if sep else (item.strip(), None)


def given_options(cls, text: str, what: str) -> dict[str, Any]:
    """The options 'key=value,key=value' names, each converted by its field's type of the
    options dataclass `cls` (only the keys given: presets fill the rest). An item without '='
    continues the list of the tuple-typed option before it (vars=x0,x1). A class with a
    `free_options` field takes the keys it has no field for as 'key=value' items there
    (condition{x3=1}). `what` names the source ('pass \'grow\'', '--lvd') and unknown keys are
    listed with the known ones."""
    kinds = option_types(cls)
    free = getattr(cls, "free_options", None)
    raw: dict[str, Any] = {}
    last = None
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, value = split_option(item)
        if value is None and last is not None and _takes_list(kinds[last]):
            raw[last] = (raw[last] if isinstance(raw[last], list) else [raw[last]]) + [key]
            continue
        if value is not None and key not in kinds and free in kinds:
            raw.setdefault(free, []).append(f"{key}={value}")
            continue
        if value is None or key not in kinds:
            raise ArgumentError(f"{what} has no option '{key}'; options: {', '.join(kinds) or 'none'}")
        if key in raw:
            raise ArgumentError(f"{what}: option '{key}' is given twice")
        raw[key] = value
        last = key
    return {key: option_value(v, kinds[key], f"{what}: option '{key}'") for key, v in raw.items()}


def parse_options(cls, text: str, what: str):
    """An options dataclass from 'key=value,key=value' (any subset of its fields; given_options)."""
    return cls(**given_options(cls, text, what))
