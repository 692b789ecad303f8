"""The layers load on their own: the IR and the passes need numpy only (checked in a fresh
interpreter, on what is in sys.modules after the import)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "lark", "networkx", "triton", "safetensors", "typer", "matplotlib", "pccompile.runtime")


@pytest.mark.parametrize("module", ["pccompile.ir", "pccompile.passes", "pccompile"])
def test_importing_a_layer_loads_nothing_heavy(module):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import {module} loaded {out}"


def test_the_facade_still_offers_every_name():
    code = ("import pccompile as pc; names = pc.__all__; "
            "print(all(getattr(pc, n) is not None for n in names), 'compile' in dir(pc))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True True"
