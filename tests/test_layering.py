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
    code = (
        "import pccompile as pc; names = pc.__all__; "
        "print(all(getattr(pc, n) is not None for n in names), 'compile' in dir(pc))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True True"


def test_no_string_comparison_on_distribution_names_outside_the_family_modules():
    """Families are told apart by their registered objects, not by `dist == "gaussian"` chains."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    from pccompile.ir import FAMILIES

    names = "|".join(c.name for c in FAMILIES)
    pattern = re.compile(rf"""(==|!=)\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    hits = [
        f"{f.relative_to(root)}:{k + 1}"
        for folder in ("pccompile", "ir", "passes", "codegen")
        for f in (root / folder).rglob("*.py")
        if f.parent.name != "families"
        for k, line in enumerate(f.read_text().splitlines())
        if pattern.search(line)
    ]
    assert not hits, hits


def test_both_backends_implement_the_executor_interface_on_their_own():
    import inspect
    from pathlib import Path

    from pccompile.codegen.executor import Executor
    from pccompile.codegen.torch_backend import TorchExecutor
    from pccompile.codegen.triton import TritonExecutor

    assert not issubclass(TritonExecutor, TorchExecutor) and not issubclass(TorchExecutor, TritonExecutor)
    methods = [n for n, v in vars(Executor).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert set(methods) == {
        "node_values",
        "forward_mars",
        "forward_max",
        "decode",
        "backward_flows",
        "em_dense_blocks",
        "em_inputs",
        "input_stats",
        "input_block",
    }
    for cls in (TorchExecutor, TritonExecutor):
        for name in methods:
            ours = inspect.signature(getattr(cls, name)).parameters
            assert list(ours)[: len(inspect.signature(getattr(Executor, name)).parameters)] == list(
                inspect.signature(getattr(Executor, name)).parameters
            ), (cls, name)
    import pccompile as pc

    model = pc.compile("examples/mixture.pc")
    assert isinstance(model.executor, Executor)
    root = Path(__file__).resolve().parent.parent
    for f in (
        "pccompile/runtime/module.py",
        "pccompile/analysis/flows.py",
        "pccompile/learn/em.py",
        "pccompile/runtime/queries.py",
    ):
        text = (root / f).read_text()
        assert "getattr(self.executor" not in text and "executor._" not in text, f  # the interface only
        assert "executor.tensors" not in text, f  # the decoder is the executor's, not read around it
    for folder in ("codegen/triton", "codegen/layers"):  # what backends share lives in codegen.layers
        for path in (root / folder).glob("*.py"):
            assert "torch_backend" not in path.read_text(), path


def test_the_ir_and_the_passes_import_nothing_above_them():
    """docs/architecture.md: nothing imports upwards. The IR and the passes may import the IR
    (and the passes each other), never the codegen, the runtime or the driver, even inside a
    function: an analysis the passes need arrives through PassContext."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    above = re.compile(r"^\s*(from|import)\s+pccompile(\.(?!ir\b|passes\b)\w+|\s+import|\s*$)", re.M)
    hits = [
        f"{f.relative_to(root)}: {m.group(0).strip()}"
        for folder in ("ir", "passes")
        for f in (root / folder).rglob("*.py")
        for m in above.finditer(f.read_text())
    ]
    assert not hits, hits
