"""The typed option converter (pccompile.ir.options) and the environment table (ir.env): every
type, every range edge, and the one-line refusals that name the option, the value and what is
allowed. Expected values are written out here, not computed by the converter."""

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pytest
from pccompile.ir import ArgumentError
from pccompile.ir.env import env_value
from pccompile.ir.options import (
    INT64_MAX,
    Range,
    Refused,
    check_fields,
    convert,
    describe,
    option_value,
    parse_options,
)

Small = Annotated[int, Range(1, 64)]
Unit = Annotated[float, Range(0, 1, open_lo=True)]


@pytest.mark.parametrize(
    "value,kind,want",
    [
        ("7", int, 7),
        (" -3 ", int, -3),
        (str(INT64_MAX), int, INT64_MAX),
        (np.int32(5), Small, 5),
        ("64", Small, 64),
        ("0.5", float, 0.5),
        ("1e-3", float, 0.001),
        (3, float, 3.0),
        ("1", Unit, 1.0),
        ("inf", Annotated[float, Range(0, math.inf)], math.inf),
        ("yes", bool, True),
        ("0", bool, False),
        (1, bool, True),
        ("block", Literal["edge", "block"], "block"),
        ("none", Small | None, None),
        ("NONE", Small | None, None),
        ("8", Small | None, 8),
        ("auto", Literal["auto"] | Small, "auto"),
        ("12", Literal["auto"] | Small, 12),
        ("28x28", tuple[Small, ...], (28, 28)),
        ([3, 4, 5], tuple[Small, ...], (3, 4, 5)),
        ("", str, ""),
    ],
)
def test_values_that_fit_convert_exactly(value, kind, want):
    got = convert(value, kind)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    "value,kind",
    [
        ("²", int),  # a digit to str.isdigit, not to us
        ("١٢", int),  # Arabic-Indic digits: int() would take them
        ("1e3", int),
        ("2.0", int),
        (2.0, int),
        (1e300, int),
        (True, int),
        (str(2**63), int),
        (str(-(2**63) - 1), int),
        (10**20, Small),
        ("0", Small),
        ("65", Small),
        ("nan", float),
        (math.nan, Annotated[float, Range(None, math.inf)]),
        ("inf", float),
        ("-inf", Annotated[float, Range(0, None)]),
        ("1e400", float),
        ("0", Unit),
        ("", float),
        ("x", float),
        ("maybe", bool),
        (2, bool),
        ("row", Literal["edge", "block"]),
        ("", Small | None),
        ("28x", tuple[Small, ...]),
        ("28x0", tuple[Small, ...]),
        (5, str),
    ],
)
def test_values_that_do_not_fit_are_refused(value, kind):
    with pytest.raises(Refused):
        convert(value, kind)


@pytest.mark.parametrize(
    "kind,words",
    [
        (int, "an integer in -2^63..2^63-1"),
        (Small, "an integer in 1..64"),
        (Annotated[int, Range(0, None)], "an integer >= 0"),
        (float, "a finite number"),
        (Unit, "a finite number in (0, 1]"),
        (Annotated[float, Range(0, math.inf)], "a number in [0, inf]"),
        (Literal["flow", "random"], "one of flow, random"),
        (Literal["auto"] | Small, "auto or an integer in 1..64"),
        (Small | None, "an integer in 1..64 or none"),
        (bool, "true or false (1 or 0)"),
    ],
)
def test_descriptions_say_what_is_allowed(kind, words):
    assert describe(kind) == words


def test_a_refusal_is_one_line_with_the_option_and_the_value():
    with pytest.raises(ArgumentError) as e:
        option_value("1e300", Small, "pass 'x': option 'n'")
    assert str(e.value) == "pass 'x': option 'n' expects an integer in 1..64, got '1e300'"
    with pytest.raises(ArgumentError, match=r"got '" + "y" * 36 + r"\.\.\.$"):
        option_value("y" * 100, Small, "n")


@dataclass(frozen=True)
class Opts:
    size: Small = 4
    rate: Unit = 0.5
    mode: Literal["a", "b"] = "a"

    def __post_init__(self):
        check_fields(self, "--opts: option '{name}'")


def test_parse_options_and_check_fields():
    assert parse_options(Opts, "", "--opts") == Opts()
    assert parse_options(Opts, " size=8 , mode=b ", "--opts") == Opts(8, 0.5, "b")
    with pytest.raises(ArgumentError, match="--opts has no option 'colour'; options: size, rate, mode"):
        parse_options(Opts, "colour=1", "--opts")
    with pytest.raises(ArgumentError, match="--opts: option 'size' is given twice"):
        parse_options(Opts, "size=1,size=2", "--opts")
    with pytest.raises(ArgumentError, match=r"--opts: option 'rate' expects a finite number in \(0, 1\], got 0"):
        Opts(rate=0)  # the API is checked like the text
    made = Opts(size=np.int64(3), rate=1)
    assert type(made.size) is int and type(made.rate) is float  # made exact, not merely accepted


def test_environment_variables_are_read_through_their_declared_type(monkeypatch):
    monkeypatch.delenv("PCC_DIST_TIMEOUT", raising=False)
    assert env_value("PCC_DIST_TIMEOUT") == 120.0
    monkeypatch.setenv("PCC_DIST_TIMEOUT", "")
    assert env_value("PCC_DIST_TIMEOUT") == 120.0
    monkeypatch.setenv("PCC_DIST_TIMEOUT", "30")
    assert env_value("PCC_DIST_TIMEOUT") == 30.0
    monkeypatch.setenv("PCC_DEBUG", "0")
    assert env_value("PCC_DEBUG") is False
    monkeypatch.setenv("PCC_MEMORY_LIMIT", "1e9")
    with pytest.raises(ArgumentError) as e:
        env_value("PCC_MEMORY_LIMIT")
    assert str(e.value) == (
        "environment variable PCC_MEMORY_LIMIT expects an integer in 1..4,611,686,018,427,387,904, got '1e9'"
    )


def test_the_lvd_encoder_choices_are_the_encoder_registry():
    import typing

    from pccompile.lvd.distill import ENCODERS, LVDOptions

    kind = typing.get_type_hints(LVDOptions, include_extras=True)["encoder"]
    assert set(typing.get_args(kind)) == set(ENCODERS)


def test_packing_options_are_checked():
    from pccompile.passes import PackOptions

    with pytest.raises(ArgumentError, match=r"packing option 'tolerance' expects a finite number >= 0, got nan"):
        PackOptions(tolerance=math.nan)
    with pytest.raises(ArgumentError, match=r"packing option 'max_partitions' expects an integer in 1..4,096, got 0"):
        PackOptions(max_partitions=0)


def test_options_text_is_parsed_in_one_place_only():
    """Every learner, pass and template reads 'key=value,...' through ir.options (typed fields,
    one set of messages); a module splitting such text itself would drift from it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"""\.(partition|split)\(\s*["']=["']""")
    found = [
        str(path.relative_to(root))
        for folder in ("pccompile", "ir", "passes", "codegen")
        for path in (root / folder).rglob("*.py")
        if path.name != "options.py" and pattern.search(path.read_text())
    ]
    assert found == []


def test_a_list_option_runs_across_commas_and_free_keys_go_to_their_field():
    from dataclasses import dataclass
    from typing import ClassVar

    from pccompile.ir.options import given_options

    @dataclass(frozen=True)
    class Opts:
        free_options: ClassVar[str] = "rest"
        names: tuple[str, ...] | None = None
        shape: tuple[int, ...] | None = None
        rest: tuple[str, ...] | None = None

    got = given_options(Opts, "names=x0,x1,x2,shape=28x28,a=1,b=2", "test")
    assert got == {"names": ("x0", "x1", "x2"), "shape": (28, 28), "rest": ("a=1", "b=2")}
    with pytest.raises(ArgumentError, match="test has no option 'x1'; options: names, shape, rest"):
        given_options(Opts, "x1", "test")
