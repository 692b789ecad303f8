"""Bad .pc input: every error is a DSL error with file:line:col and a caret under the right token,
template arguments included; sizes beyond the documented caps are refused at once."""

import time

import numpy as np
import pytest
from helpers import located
from pccompile.ir import DSLSemanticError, DSLSyntaxError, ResourceError

import pccompile as pc


@pytest.fixture
def data5(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.full((20, 3), 5))
    return path


H = "var x[3] : binary\n"


@pytest.mark.parametrize(
    "call,match,token",
    [
        ('hmm(x, latents="abc")', r"hmm: latents expects an integer in 1..65,536, got 'abc'", '"abc"'),
        ("hmm(x, latents=1e999)", r"hmm: latents expects an integer in 1..65,536, got inf", "1e999"),
        ("hmm(x, latents=2.5)", r"latents expects an integer in 1..65,536, got 2.5", "2.5"),
        ("hmm(x, latents=0)", r"hmm: latents expects an integer in 1..65,536, got 0", "0"),
        ("hmm(x, latents=70000)", r"latents expects an integer in 1..65,536, got 70000", "70000"),
        ("hmm(x, homogeneous=3)", r"homogeneous expects true or false \(1 or 0\), got 3", "3"),
        ("hmm(x, latents=abc)", r"unknown name 'abc'", "abc"),
        ("hmm(x, latents=inf)", r"unknown name 'inf'", "inf"),
        ("hmm(x, colour=1)", r"hmm has no option 'colour'; expected latents, homogeneous", "colour"),
        ("rat_spn(x, seed=-4)", r"rat_spn: seed expects an integer in 0\.\.2\^63-1, got -4", "-4"),
        ("rat_spn(x, depth=40)", r"rat_spn: depth expects an integer in 1..30, got 40", "40"),
        ("pd(x, delta=0)", r"pd: delta expects an integer in 1\.\.", "0"),
        ('pd(x, shape="wide")', r"pd: shape expects a list of values .*, each an integer >= 1, got 'wide'", '"wide"'),
    ],
)
def test_template_arguments_are_checked_at_the_argument(call, match, token):
    located(H + f"root = {call}\n", match, 2, token)


def test_hclt_arguments_and_its_data_are_checked(data5):
    d = f'data="{data5}"'
    located(
        f"var x[3] : categorical(9)\nroot = hclt(x, latents=2, {d}, max_rows=-3)\n",
        r"hclt: max_rows expects an integer in 1..1,000,000,000, got -3",
        2,
        "-3)",
    )
    located(
        f"var x[3] : binary\nroot = hclt(x, latents=2, {d})\n",
        r"variable 'x\[0\]' \(column 0\) has value 5 in row 0; expected 0..1",
        2,
        "hclt",
    )
    located("var x[3] : binary\nroot = hclt(x, latents=2)\n", r"hclt needs data=\.\.\.", 2, "hclt")
    located(
        f'var x[3] : binary\nroot = hclt(x, 2, "{data5}", 11, 12, 13, 1, 20, 1, 14)\n', r"at most 8 options", 2, "14)"
    )
    located(
        f"var x[3] : categorical(9)\nroot = hclt(x, latents=2, {d}, trees=0)\n",
        r"trees expects an integer in 1..64",
        2,
        "0)",
    )
    located(
        f"var x[3] : categorical(9)\nroot = hclt(x, latents=2, {d}, trees=3, tree_candidates=2)\n",
        r"hclt needs tree_candidates >= trees, got 2 < 3",
        2,
        "hclt",
    )


def test_errors_raised_inside_a_template_are_located():
    located("var x[3] : binary\nroot = rat_spn(x, depth=3)\n", r"rat_spn: depth must be in 1..1 for 3", 2, "rat_spn")


@pytest.mark.parametrize(
    "text,match,line,token",
    [
        (
            "var a : categorical(99999999999999999999)\n",
            r"categorical: the number of categories "
            r"99,999,999,999,999,999,999 is beyond the limit of 65,536",
            1,
            "9",
        ),
        ("var a : categorical(100000000)\n", r"100,000,000 is beyond the limit of 65,536", 1, "1"),
        (
            "var a[99999999999999999999] : binary\n",
            r"variable array 'a' 99,999,999,999,999,999,999 is beyond the "
            r"limit of 32,768",
            1,
            "9",
        ),
        ("var a[10000000] : binary\n", r"10,000,000 is beyond the limit of 32,768", 1, "1"),
        (
            "var x[6] : binary\nroot = rat_spn(x, sums=65536)\n",
            r"outer products have rows .* 4,294,967,296 is "
            r"beyond the limit of 65,536",
            2,
            "rat_spn",
        ),
        ("var a : binary\nl[70000] = bernoulli(a)\n", r"size 70,000 is beyond the limit of 65,536", 2, "7"),
        (
            "var a[4] : binary\nimage = [4, 4611686018427387905]\n",
            r"image shape \[4, 4611686018427387905\] has 18,446,744,073,709,551,620 pixels but 4 variables",
            2,
            "[",
        ),
        ("var a[4] : binary\nimage = [0, 4]\n", r"image expects .* positive integers", 2, "["),
        ("var a : categorical(1)\n", r"at least 2, got 1", 1, "1"),
        (
            "var a : binary\nl = bernoulli(a, p=[1e400])\n",
            r"bernoulli p must lie in \[0, 1\], got \[inf\]",
            2,
            "bernoulli",
        ),
        (
            "var a : binary\nl = bernoulli(a, p=[99999999999999999999" + "9" * 400 + "])\n",
            r"each within the range of a float",
            2,
            "[",
        ),
    ],
)
def test_sizes_beyond_the_caps_are_refused_at_the_token(text, match, line, token):
    t0 = time.perf_counter()
    located(text, match, line, token)
    assert time.perf_counter() - t0 < 5, "refused up front, not after minutes"


def test_memory_the_machine_lacks_is_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("PCC_MEMORY_LIMIT", str(1 << 30))
    text = "var a : categorical(65536)\nl[65536] = categorical(a)\nroot = sum(l)\n"
    e = located(
        text,
        r"4,294,967,296 parameters, which need about 64\.0 GiB; 1\.0 GiB are allowed by PCC_MEMORY_LIMIT",
        2,
        "categorical",
    )
    assert isinstance(e, DSLSemanticError)
    # the Python builder and ir.Circuit paths are checked too
    big = pc.summate(pc.inputs(0, 65536, pc.Categorical(65536)), size=1)
    with pytest.raises(ResourceError, match="parameters"):
        pc.compile(big)


def test_deep_nesting_is_a_message_not_a_recursion_error(tmp_path):
    for depth in (500, 100_000):
        text = "var a : binary\nl = bernoulli(a, p=" + "[" * depth + "0.5" + "]" * depth + ")\n"
        with pytest.raises(DSLSemanticError, match=r"lists nested more than 64 deep are beyond the limit") as info:
            pc.compile(text)
        assert (info.value.line, info.value.column) == (2, text.split("\n")[1].index("[") + 66)  # the 65th list


def test_a_file_that_is_not_utf8_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.pc"
    path.write_bytes(b"var a : binary\nl = bern\xffoulli(a)\n")
    with pytest.raises(DSLSyntaxError, match=r"bad\.pc:2:9: byte 0xff is not UTF-8 text") as info:
        pc.compile(path)
    assert info.value.line == 2 and info.value.column == 9
    (tmp_path / "dir.pc").mkdir()
    with pytest.raises(pc.ArgumentError, match="cannot read circuit file .*dir.pc"):
        pc.compile(tmp_path / "dir.pc")


def test_semantic_errors_point_at_their_own_line():
    located("var a : binary\nl = bernoulli(a)\n\n\nm = bernoulli(z)\n", r"unknown variable 'z'", 5, "z")
    located("var a : binary\nl = bernoulli(a)\nroot = sum(l, weights=[])\n", r"weights have shape", 3, "[")


@pytest.mark.parametrize("sep", ["\f", "\r", "\t"])
def test_form_feeds_and_lone_carriage_returns_keep_line_and_caret_right(sep):
    text = f"var a : binary{sep}\nl = bernoulli(a){sep}m = bernoulli(q)\n"
    e = located(text, r"unknown variable 'q'", 2, "q")
    assert sep not in str(e).split("\n")[1]
