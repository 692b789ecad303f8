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


def save(model, path: str | Path, *, extra: dict | None = None) -> None:
    """Write `model` (a CompiledCircuit) with its current parameters to `path` (.pcz)."""
    circuit = model.to_circuit()
    meta, arrays = circuit_to_storage(circuit)
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


def load(path: str | Path, *, device=None, backend: str = "auto"):
    """Read a model written by `save` and compile it again (structure and parameters as saved)."""
    from .compiler import compile as _compile

    record, arrays = read(path)
    circuit = circuit_from_storage(record["circuit"], arrays)
    return _compile(circuit, device=device, backend=backend)
