"""A small FileCheck (as in LLVM and xDSL): expected lines written beside the input.

    CHECK: text         the next line, at or after the current one, that contains text
    CHECK-NEXT: text    the very next line contains text
    CHECK-NOT: text     no line between the previous match and the next one contains text
    a text ending in $  the line must end with it (so that nothing else follows)

`filecheck(output, checks)` raises AssertionError naming the first directive that fails and
showing the output, so that a failing pass test reads like a diff.
"""

from __future__ import annotations

import re

_DIRECTIVE = re.compile(r"^\s*#?\s*(CHECK(?:-NEXT|-NOT)?):\s?(.*)$")


def directives(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2).rstrip()) for line in text.splitlines() if (m := _DIRECTIVE.match(line))]


def _matches(line: str, text: str) -> bool:
    if text.endswith("$"):
        body = text[:-1]
        return body in line and line.rstrip().endswith(body)
    return text in line


def filecheck(output: str, checks: str) -> None:
    lines = output.splitlines()
    pos, nots = 0, []  # pos: first line a CHECK may match
    found = directives(checks)
    assert found, "no CHECK directives"
    for kind, text in found:
        if kind == "CHECK-NOT":
            nots.append(text)
            continue
        if kind == "CHECK-NEXT":
            at = pos if pos < len(lines) and _matches(lines[pos], text) else None
        else:
            at = next((i for i in range(pos, len(lines)) if _matches(lines[i], text)), None)
        if at is None:
            raise AssertionError(f"{kind}: {text!r} not found after line {pos}\n--- output ---\n{output}")
        for t in nots:
            hit = next((i for i in range(pos, at) if t in lines[i]), None)
            if hit is not None:
                raise AssertionError(f"CHECK-NOT: {t!r} found on line {hit}\n--- output ---\n{output}")
        nots, pos = [], at + 1
    for t in nots:
        hit = next((i for i in range(pos, len(lines)) if t in lines[i]), None)
        if hit is not None:
            raise AssertionError(f"CHECK-NOT: {t!r} found on line {hit}\n--- output ---\n{output}")
