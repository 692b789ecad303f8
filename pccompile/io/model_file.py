"""save/load: a versioned zip holding JSON (structure, options) and safetensors (all arrays).

Nothing is pickled, so loading a file never runs code from it."""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from pccompile.ir import CircuitError, FormatError, PCError, verify
from pccompile.ir.limits import memory_bytes
from pccompile.ir.serialize import circuit_from_storage, circuit_to_storage

FORMAT = "pccompile-model"
VERSION = 1


def save(
    model, path: str | Path, *, extra: dict | None = None, extra_arrays: dict[str, np.ndarray] | None = None
) -> None:
    """Write `model` (a CompiledCircuit) with its current parameters to `path` (.pcz).

    Holds the IR with normalised parameters (readable by any tool) and the module's exact
    state (`state.*`), so a reloaded model continues bit for bit where it stopped."""
    circuit = model.to_circuit()
    meta, arrays = circuit_to_storage(circuit)
    for k, v in model.state_dict().items():
        arrays[f"state.{k}"] = v.detach().cpu().contiguous().numpy()
    arrays.update(extra_arrays or {})
    record = {"format": FORMAT, "version": VERSION, "circuit": meta, "backend": model.backend, "extra": extra or {}}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.json", json.dumps(record, indent=1))
        z.writestr("arrays.safetensors", st_save(arrays) if arrays else b"")
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written model


MEMBERS = ("model.json", "arrays.safetensors")
MAX_JSON_BYTES = 64 << 20
ARRAY_PREFIXES = ("param.", "index.", "mask.", "state.", "optim.")


def read(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON record and the arrays of a model file, every part checked: a damaged, truncated or
    tampered file is a FormatError naming the member and what was wrong. Only the two members are
    read, each capped in size before it is inflated; nothing is unpickled or extracted to disk."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"model file '{path}' does not exist")
    if path.is_dir():
        raise FormatError(f"model path '{path}' is a directory, not a .pcz file")
    try:
        with zipfile.ZipFile(path) as z:
            infos = _members(path, z)
            text = _inflate(path, z, infos["model.json"], MAX_JSON_BYTES)
            raw = _inflate(path, z, infos["arrays.safetensors"], min(memory_bytes() // 2, 1 << 36))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        RuntimeError,
        ValueError,
    ) as e:
        raise FormatError(
            f"'{path}' is not a pccompile model file, or it is damaged ({type(e).__name__}: {e})"
        ) from None
    record = _record(path, text)
    return record, _arrays(path, raw)


def _members(path: Path, z: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    names = z.namelist()
    for name in names:
        if name not in MEMBERS:
            raise FormatError(
                f"'{path}' has an unexpected member {name!r}; a model file holds only {' and '.join(MEMBERS)}"
            )
    if len(set(names)) != len(names):
        raise FormatError(f"'{path}' holds a member twice")
    missing = [m for m in MEMBERS if m not in names]
    if missing:
        raise FormatError(f"'{path}' is not a pccompile model file (member {missing[0]} is missing)")
    return {i.filename: i for i in z.infolist()}


def _inflate(path: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A member's bytes, refusing before inflating one whose size is beyond `cap`."""
    if info.file_size > cap:
        raise FormatError(
            f"'{path}': member {info.filename} would inflate to {info.file_size:,} bytes, beyond the limit of {cap:,}"
        )
    with z.open(info) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise FormatError(f"'{path}': member {info.filename} inflates beyond the limit of {cap:,} bytes")
    return data


def _record(path: Path, text: bytes) -> dict:
    try:
        record = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"'{path}': member model.json is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise FormatError(f"'{path}' is not a pccompile model file (model.json is not a model record)")
    if record.get("version") != VERSION:
        raise FormatError(f"'{path}' has format version {record.get('version')!r}; this build reads {VERSION}")
    for key, kind in (("circuit", dict), ("extra", dict), ("backend", str)):
        if not isinstance(record.get(key), kind):
            raise FormatError(f"'{path}': member model.json has no valid '{key}' entry")
    return record


def _arrays(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    if not raw:
        return {}
    try:
        arrays = st_load(raw)
    except (SafetensorError, ValueError, TypeError, OverflowError) as e:
        raise FormatError(f"'{path}': member arrays.safetensors is damaged ({str(e)[:200]})") from None
    for key, v in arrays.items():
        if not key.startswith(ARRAY_PREFIXES):
            raise FormatError(f"'{path}': member arrays.safetensors holds an unexpected tensor {key!r}")
        if v.dtype.kind not in "biuf":
            raise FormatError(f"'{path}': tensor '{key}' has type {v.dtype}; expected numbers")
        if key.startswith(("param.", "state.", "optim.")) and v.dtype.kind == "f" and not np.isfinite(v).all():
            raise FormatError(f"'{path}': tensor '{key}' holds NaN or infinite values")
    return arrays


def module_state(arrays: dict[str, np.ndarray]):
    """The exact module state (`state.*` arrays) of a file read with `read`, as torch tensors."""
    import torch

    return {k[len("state.") :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("state.")}


def load(path: str | Path, *, device=None, backend: str = "auto"):
    """Read a model written by `save` and compile it again (structure and parameters as saved).

    The circuit must verify with every parameter present, and the module state must match the
    compiled module tensor for tensor (names, shapes, types); otherwise a FormatError says what
    was wrong, so a damaged file never loads with fresh random or NaN parameters."""
    import torch

    from ..compiler import compile as _compile

    record, arrays = read(path)
    circuit = circuit_from_storage(record["circuit"], arrays)
    try:
        verify(circuit, require_params=True)
    except PCError as e:
        raise FormatError(f"'{path}' describes an invalid circuit: {e}") from None
    state = module_state(arrays)
    dtype = torch.float64 if any(v.dtype == torch.float64 for v in state.values()) else None
    try:
        model = _compile(circuit, backend=backend, dtype=dtype)
    except CircuitError as e:
        raise FormatError(f"'{path}' describes an invalid circuit: {e}") from None
    check_state(path, model.state_dict(), state)
    model.load_state_dict(state)
    return model.to(device) if device is not None else model


def check_state(path, expected: dict, state: dict) -> None:
    """The saved module state must name, shape and type every tensor as the compiled module does."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks tensor 'state.{missing[0]}'" if missing else f"has an unexpected tensor 'state.{extra[0]}'"
        raise FormatError(f"'{path}': the module state {what}")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            raise FormatError(
                f"'{path}': tensor 'state.{key}' is {got.dtype} {tuple(got.shape)}; the circuit "
                f"needs {want.dtype} {tuple(want.shape)}"
            )
