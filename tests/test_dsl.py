"""DSL: syntax and semantic errors name file:line:column with a caret; print/parse round trip."""

import numpy as np
import pytest
from helpers import random_circuit
from pccompile.ir import DSLSemanticError, DSLSyntaxError, same_circuit

import pccompile as pc

HEADER = "var a, b : binary\n"


def _err(text, kind=DSLSemanticError):
    with pytest.raises(kind) as e:
        pc.parse(text, file="t.pc")
    return e.value


@pytest.mark.parametrize(
    "text,line,col,expect",
    [
        ("var a : binary\nla[2] = bernoulli(a\n", 2, 20, "unexpected end of input; expected"),
        ("var a : binary\nla[2] = bernoulli(a))\n", 2, 21, "unexpected ')'"),
        ("var a binary\n", 1, 7, "expected ',', ':' or '['"),
        ("var a : binary\nla[2] == bernoulli(a)\n", 2, 8, "unexpected"),
        ("var a : binary\nla[2] = bernoulli(a) $\n", 2, 22, "unexpected character '$'"),
        ("var a : binary\nla[x] = bernoulli(a)\n", 2, 4, "an integer"),
    ],
)
def test_syntax_errors_name_line_column_and_expectation(text, line, col, expect):
    e = _err(text, DSLSyntaxError)
    assert (e.file, e.line, e.column) == ("t.pc", line, col)
    assert expect in str(e)
    assert str(e).startswith(f"t.pc:{line}:{col}:")
    assert "^" in str(e)  # the caret under the offending column


@pytest.mark.parametrize(
    "body,line,col,expect",
    [
        ("la[2] = bernoulli(z)\n", 2, 19, "unknown variable 'z'"),
        ("la[2] = weibull(a)\n", 2, 9, "unknown function 'weibull'"),
        ("la[2] = bernoulli(a)\nla[2] = bernoulli(b)\n", 3, 1, "already defined"),
        ("la[2] = bernoulli(a, p=[0.5])\n", 2, 24, "shape (1,), expected (2,)"),
        ("la[2] = bernoulli(a, p=[0.5, 1.5])\n", 2, 9, "[0, 1]"),
        ("la[2] = bernoulli(a, q=[0.5, 0.5])\n", 2, 22, "no parameter 'q'"),
        ("la[2] = bernoulli(a)\nlb[3] = bernoulli(b)\np = product(la, lb)\n", 4, 5, "different sizes"),
        ("la[2] = bernoulli(a)\ns = sum(la, weights=[[0.5, 0.6]])\n", 3, 21, "sum to 1.1"),
        ("la[2] = bernoulli(a)\ns = sum(la, weights=[[0.5, 0.5, 0]])\n", 3, 21, "shape (1, 3)"),
        ("la[2] = bernoulli(a)\ns = sum(la, mask=[[0, 0]])\n", 3, 18, "no edge"),
        ("la[2] = bernoulli(a)\ns = sum(lx)\n", 3, 9, "unknown node 'lx'"),
        ("la[2] = bernoulli(a)\ns = sum(a)\n", 3, 9, "it is a variable"),
        ("la[2] = gaussian(a)\n", 2, 18, "does not fit"),
        ("la[2] = bernoulli(a)\nlb[2] = bernoulli(a)\np = product(la, lb)\ns = sum(p)\n", 4, 1, "decomposable"),
        ("la[1] = bernoulli(a)\nlb[1] = bernoulli(b)\ns = sum(la, lb)\n", 4, 1, "smooth"),
        ("la[2] = bernoulli(a)\nlb[2] = bernoulli(b)\np = product(la, lb)\n", 4, 1, "root must have size 1"),
        ("la[2] = bernoulli(a)\ns = sum(la)\n", 3, 1, "'b' is declared but not in the root's scope"),
        ("image = [3, 3]\n", 2, 9, "9 pixels but 2 variables"),
        ("colour = 3\n", 2, 1, "unknown setting 'colour'"),
        ("la[2] = bernoulli(a)\noutput zz\n", 3, 8, "unknown node 'zz'"),
    ],
)
def test_semantic_errors_point_at_the_token(body, line, col, expect):
    e = _err(HEADER + body)
    assert (e.line, e.column) == (line, col), str(e)
    assert expect in str(e), str(e)


def test_empty_file_is_an_error():
    assert "defines no nodes" in str(_err("# nothing\n"))


def test_parse_file_reports_its_path(tmp_path):
    f = tmp_path / "bad.pc"
    f.write_text("var a : binary\nx = sum(\n")
    with pytest.raises(DSLSyntaxError) as e:
        pc.parse_file(f)
    assert str(e.value).startswith(f"{f}:")


def test_language_features_parse():
    src = """
    # arrays, explicit parameters, masks, ties, row selection and output
    var x[2] : categorical(3)
    var g : real
    image = [1, 3]
    lx0[2] = categorical(x[0], probs=[[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    lx1[2] = categorical(x[1])
    lg[2] = gaussian(g, mean=[0, 1], std=[1, 2])
    outer[4] = product(lx0[[0, 0, 1, 1]], lx1[[0, 1, 0, 1]])
    s1[2] = sum(outer, mask=[[1, 1, 0, 1], [0, 1, 1, 1]])
    s2[2] = sum(outer, mask=[[1, 1, 0, 1], [0, 1, 1, 1]], tie=s1)
    p = product(s1, lg)
    q = product(s2, lg)
    top = sum(p, q)
    output top
    """
    c = pc.parse(src)
    assert c.meta["image"] == [1, 3]
    assert c.nodes[c.root].name == "top"
    assert c.by_name("s2").tie == c.by_name("s1").id
    model = pc.compile(c)
    assert model(np.array([[0, 1, 0.3]], dtype=np.float32)).shape == (1,)


@pytest.mark.parametrize("trial", range(10))
def test_print_parse_round_trip(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 6)), gaussian=trial % 3 == 0)
    text = pc.print_circuit(circuit)
    back = pc.parse(text)
    assert same_circuit(back, circuit), text
    assert pc.print_circuit(back) == text


def test_structure_only_print_round_trips(rng):
    circuit = random_circuit(rng, num_vars=4)
    back = pc.parse(pc.print_circuit(circuit, params=False))
    assert same_circuit(back, circuit, params=False)
    assert not back.params
