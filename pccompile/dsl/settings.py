"""The DSL's settings (`NAME = value` statements that are not node statements): one checker
per setting, in a table; each reads the value where it stands and records it on the parser."""

from __future__ import annotations

import math
from collections.abc import Callable

import lark


def _image(parser, name_tok, value) -> None:
    shape = parser.value(value)
    if not (isinstance(shape, list) and len(shape) in (2, 3) and all(isinstance(s, int) and s >= 1 for s in shape)):
        raise parser.error(value, "image expects [height, width] or [channels, height, width] of positive integers")
    if math.prod(shape) != len(parser.variables):
        raise parser.error(
            value,
            f"image shape {shape} has {math.prod(shape):,} pixels but {len(parser.variables)} variables are declared",
        )
    parser.meta["image"] = [int(s) for s in shape]


def _name(parser, name_tok, value) -> None:
    parser.meta["name"] = str(parser.value(value))


def _seed(parser, name_tok, value) -> None:
    seed = parser.value(value)
    if not isinstance(seed, int) or seed < 0:
        raise parser.error(value, "seed expects a non-negative integer")
    parser.seed = seed


def _signed(parser, name_tok, value) -> None:
    flag = str(value.children[0]) if isinstance(value, lark.Tree) and value.data == "name_ref" else None
    if flag not in ("true", "false"):
        raise parser.error(value, "signed expects true or false")
    if parser.nodes:  # the weights of the nodes before it were checked as monotone
        raise parser.error(name_tok, "signed must be set before the first node statement")
    parser.meta["signed"] = flag == "true"


SETTINGS: dict[str, Callable] = {"image": _image, "name": _name, "seed": _seed, "signed": _signed}
"""Setting name -> its checker(parser, name token, value tree)."""


def apply_setting(parser, stmt) -> None:
    name_tok, value = stmt.children
    rule = SETTINGS.get(str(name_tok))
    if rule is None:
        raise parser.error(
            name_tok,
            f"unknown setting '{name_tok}'; expected {', '.join(SETTINGS)} "
            "(a node statement needs a call such as sum(...))",
        )
    rule(parser, name_tok, value)
