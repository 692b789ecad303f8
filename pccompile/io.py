"""save/load: a versioned zip holding JSON (structure, options) and safetensors (all arrays).

Nothing is pickled, so loading a file never runs code from it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from pccompile.ir import FormatError
from pccompile.ir.serialize import circuit_from_storage, circuit_to_storage

FORMAT = "pccompile-model"
VERSION = 1


def save(model, path: str | Path, *, extra: dict | None = None,
         extra_arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write `model` (a CompiledCircuit) with its current parameters to `path` (.pcz).

    Holds the IR with normalised parameters (readable by any tool) and the module's exact
    state (`state.*`), so a reloaded model continues bit for bit where it stopped."""
    circuit = model.to_circuit()
    meta, arrays = circuit_to_storage(circuit)
    for k, v in model.state_dict().items():
        arrays[f"state.{k}"] = v.detach().cpu().contiguous().numpy()
    arrays.update(extra_arrays or {})
    record = {"format": FORMAT, "version": VERSION, "circuit": meta, "backend": model.backend,
              "extra": extra or {}}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.json", json.dumps(record, indent=1))
        z.writestr("arrays.safetensors", st_save(arrays) if arrays else b"")
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written model


def read(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.exists():
        raise FormatError(f"model file '{path}' does not exist")
    try:
        with zipfile.ZipFile(path) as z:
            record = json.loads(z.read("model.json"))
            raw = z.read("arrays.safetensors")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as e:
        raise FormatError(f"'{path}' is not a pccompile model file ({e})") from None
    if record.get("format") != FORMAT:
        raise FormatError(f"'{path}' is not a pccompile model file")
    if record.get("version") != VERSION:
        raise FormatError(f"'{path}' has format version {record.get('version')}; this build reads {VERSION}")
    arrays = st_load(raw) if raw else {}
    return record, arrays


def module_state(arrays: dict[str, np.ndarray]):
    """The exact module state (`state.*` arrays) of a file read with `read`, as torch tensors."""
    import torch

    return {k[len("state."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("state.")}


def load(path: str | Path, *, device=None, backend: str = "auto"):
    """Read a model written by `save` and compile it again (structure and parameters as saved)."""
    from .compiler import compile as _compile

    import torch

    record, arrays = read(path)
    circuit = circuit_from_storage(record["circuit"], arrays)
    state = module_state(arrays)
    dtype = torch.float64 if any(v.dtype == torch.float64 for v in state.values()) else None
    model = _compile(circuit, backend=backend, dtype=dtype)
    if state:
        model.load_state_dict(state)
    return model.to(device) if device is not None else model
