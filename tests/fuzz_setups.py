"""The fuzzer's wrong set-ups (tests/fuzzing.py runs them): every option of every pass, learner
and DSL template driven with awkward values, every metadata field of a saved model mutated,
and every environment variable pccompile reads given a bad value.

Unlike the mutators of fuzzing.py these cases are enumerated, not drawn: the class is covered
when every option meets every value. Each case must end in success or one PCError; a `pcc`
command must exit 0, or 2 with one `error:` line, and leave no half-written file behind.
"""

from __future__ import annotations

import copy
import io
import json
import os
import typing
import zipfile
from pathlib import Path

import numpy as np
from pccompile.ir import PCError

import pccompile as pc

ROOT = Path(__file__).resolve().parent.parent
# what every option meets: non-numbers, the edges of the number line, and text that is no number
AWKWARD = ["nan", "inf", "-inf", "0", "-1", str(2**63), "1e300", "²", "", "x"]
SMALL_SPEC = "var x[6] : categorical(3)\nroot = hmm(x, latents=3)\n"
IMAGE_SPEC = 'var px[16] : categorical(3)\nimage = [4, 4]\nname = "tiny"\nroot = hclt(px, latents=3, data="rows.npy")\n'


def _rows(n: int = 40, v: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, (n, v))


# -- options -------------------------------------------------------------------------------------
def option_cases():
    """(label, case) for every option of every pass, learner and template, with every value."""
    from pccompile.ir.options import option_types
    from pccompile.passes import registered

    from pccompile.dsl.templates import TEMPLATES
    from pccompile.learn import CompressOptions, PruneGrowOptions
    from pccompile.lvd import LVDOptions

    for name, cls in sorted(registered().items()):
        for opt in option_types(cls):
            for value in AWKWARD:
                yield f"pass {name}{{{opt}={value}}}", ("pass", name, opt, value)
    for cls in (PruneGrowOptions, CompressOptions, LVDOptions):
        for opt in option_types(cls):
            for value in AWKWARD:
                yield f"{cls.flag} {opt}={value}", ("learner", cls.flag, opt, value)
    for name, tpl in sorted(TEMPLATES.items()):
        for arg in tpl.args:
            for value in AWKWARD:
                yield f"template {name}({arg.name}={value})", ("template", name, arg.name, value)
    for command, flag in numeric_flags():
        for value in AWKWARD:
            yield f"pcc {command} {flag} {value!r}", ("flag", command, flag, value)


def numeric_flags() -> list[tuple[str, str]]:
    """(command, flag) for every int or float option of the `pcc` commands but demo (whose
    options are train's, and which trains for minutes), read off the commands' signatures."""
    import inspect

    from pccompile.cli import app

    found = []
    for c in app.registered_commands:
        name = c.name or c.callback.__name__.rstrip("_")
        if name == "demo":
            continue
        hints = typing.get_type_hints(c.callback, include_extras=True)
        for pname, p in inspect.signature(c.callback).parameters.items():
            hint, info = hints[pname], p.default
            if typing.get_origin(hint) is typing.Annotated:
                hint, info = typing.get_args(hint)[0], typing.get_args(hint)[1]
            if typing.get_origin(hint) is typing.Union:
                hint = next(a for a in typing.get_args(hint) if a is not type(None))
            if hint not in (int, float):
                continue
            decls = getattr(info, "param_decls", None) or ()
            default = getattr(info, "default", None)
            flag = decls[0] if decls else default if isinstance(default, str) and default.startswith("-") else None
            found.append((name, flag or "--" + pname.replace("_", "-")))
    return found


def run_option(case, tmp: Path) -> None:
    kind, owner, opt, value = case
    if kind == "pass":
        model = pc.compile(SMALL_SPEC, passes=f"{owner}{{{opt}={value}}}", data=_rows())
        _check_finite(model)
    elif kind == "learner":
        _run_learner(owner, opt, value, tmp)
    elif kind == "flag":
        _run_flag(owner, opt, value, tmp)
    else:
        _run_template(owner, opt, value, tmp)


def _run_learner(flag: str, opt: str, value: str, tmp: Path) -> None:
    """`pcc train` with the learner's option: a clean refusal writes nothing, a run its files."""
    np.save(tmp / "rows.npy", _rows(v=16))
    spec = tmp / "tiny.pc"
    spec.write_text(IMAGE_SPEC)
    out = tmp / f"out-{os.getpid()}"
    setting = f"{opt}={value}"
    if flag == "--lvd":
        setting += ",encoder=patches" if opt != "encoder" else ""
        setting += "" if opt == "steps" else ",steps=4"
        extra = ["--epochs", "1"]
    else:
        fast = {"rounds": "1", "epochs": "1"}
        setting += "".join(f",{k}={v}" for k, v in fast.items() if k != opt)
        extra = ["--valid", str(tmp / "rows.npy")]
    args = ["train", str(spec), "--data", str(tmp / "rows.npy"), "-b", "20", "--samples", "0"]
    _invoke([*args, *extra, flag, setting, "-o", str(out / "m.pcz")], out)


def _run_flag(command: str, flag: str, value: str, tmp: Path) -> None:
    """`pcc COMMAND` on a tiny image circuit with one numeric flag set to `value`."""
    np.save(tmp / "rows.npy", _rows(v=16))
    spec = tmp / "tiny.pc"
    spec.write_text(IMAGE_SPEC)
    out = tmp / f"out-{os.getpid()}"
    data = ["--data", str(tmp / "rows.npy")]
    base = {
        "train": [*data, "--valid", str(tmp / "rows.npy"), "--epochs", "1", "-b", "20", "--samples", "0"],
        "sample": ["-n", "2", "--out", str(out / "s.npy")],
        "eval": data,
        "mpe": data,
    }.get(command, [])
    if flag in base:  # the fuzzed flag replaces the base's value
        i = base.index(flag)
        base = base[:i] + base[i + 2 :]
    tail = ["-o", str(out / "m.pcz")] if command == "train" else []
    out.mkdir(exist_ok=True)
    _invoke([command, str(spec), *base, flag, value, *tail], out)


def _run_template(name: str, opt: str, value: str, tmp: Path) -> None:
    np.save(tmp / "rows.npy", _rows(v=16))
    text = IMAGE_SPEC.replace("hclt(px, latents=3, ", "").replace('data="rows.npy")', "")
    required = {"hclt": 'data="rows.npy"'}.get(name, "")
    args = ", ".join(a for a in (required if opt != "data" else "", f"{opt}={value}") if a)
    path = tmp / "t.pc"
    path.write_text(text.replace("root = ", f"root = {name}(px, {args})"))
    _check_finite(pc.compile(path))


# -- metadata of a saved model -------------------------------------------------------------------
META_VALUES = [None, -1, 0, 7, 2**63, 1e300, "x", "", [], [4], [4, 5], [-4, -4], [0, 16], [2, 2, 4], [4.0, 4.0]]
META_VALUES += [[True, 16], [10**30, 1], {"a": 1}, [[4, 4]], True]


def meta_cases(tmp: Path):
    """(label, tampered .pcz bytes) for every metadata field of a saved image model (meta.image,
    meta.name, every field of a region record, an unknown key) set to every value."""
    np.save(tmp / "rows.npy", _rows(v=16))
    spec = tmp / "tiny.pc"
    spec.write_text(IMAGE_SPEC)
    path = tmp / "base.pcz"
    pc.save(pc.compile(spec), path)
    raw = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    record = json.loads(members["model.json"])
    fields = [("meta", "image"), ("meta", "name"), ("meta", "extra")]
    fields += [
        ("regions", k, key) for k in (0, len(record["circuit"]["regions"]) - 1) for key in ("node", "name", "variables")
    ]
    for where in fields:
        for value in META_VALUES:
            rec = copy.deepcopy(record)
            target = rec["circuit"]["meta"] if where[0] == "meta" else rec["circuit"]["regions"][where[1]]
            target[where[-1]] = value
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w") as z:
                z.writestr("model.json", json.dumps(rec))
                z.writestr("arrays.safetensors", members["arrays.safetensors"])
            yield f"meta {'.'.join(map(str, where))}={value!r}"[:80], out.getvalue()


def run_meta(raw: bytes, tmp: Path) -> None:
    """The tampered model through everything that reads metadata: load, `pcc sample --png`
    (the image grid), `pcc check`, and LVD (the regions)."""
    path = tmp / f"meta-{os.getpid()}.pcz"
    path.write_bytes(raw)
    out = tmp / f"meta-out-{os.getpid()}"
    out.mkdir(exist_ok=True)
    for args in (["sample", str(path), "-n", "4", "--png", str(out / "s.png")], ["check", str(path)]):
        try:
            _invoke(args, out)
        except PCError:
            pass  # refused cleanly: the next reader must refuse it too, or read it right
    model = pc.load(path)
    from pccompile.lvd import LVDOptions, distill

    distill(model, _rows(v=16), LVDOptions(encoder="patches"))
    _check_finite(model)


# -- environment variables -----------------------------------------------------------------------
def _dist_timeout():
    import torch.distributed as dist

    from pccompile.learn.distributed import join, leave

    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        group = join(backend="gloo")
        assert group.world == 1 and dist.is_initialized()
        leave()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _memory_limit():
    _check_finite(pc.compile(SMALL_SPEC))


def _cache(module):
    def read():
        folder = module().cache_dir()
        assert isinstance(folder, Path)

    return read


def _debug():
    from pccompile.passes import lower

    lower(pc.compile(SMALL_SPEC).circuit)


def _local_rank():
    from pccompile.ir.env import env_value

    assert env_value("LOCAL_RANK") >= 0


def _lvd_mae():
    import pccompile.lvd.mae as mae

    return mae


def _triton_executor():
    import pccompile.codegen.triton.executor as executor

    return executor


# each variable with the code that reads it; tests check that every variable ir.env declares is here
ENV_READERS = {
    "PCC_DIST_TIMEOUT": _dist_timeout,
    "PCC_MEMORY_LIMIT": _memory_limit,
    "PCC_CACHE": _cache(_lvd_mae),
    "PCCOMPILE_CACHE": _cache(_triton_executor),
    "PCC_DEBUG": _debug,
    "LOCAL_RANK": _local_rank,
}


def env_cases():
    for name in ENV_READERS:
        for value in AWKWARD + ["1e-300", "3", "true"]:
            yield f"env {name}={value!r}", (name, value)


def run_env(case, tmp: Path) -> None:
    name, value = case
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        ENV_READERS[name]()
    finally:
        os.environ.pop(name) if saved is None else os.environ.__setitem__(name, saved)


# -- shared --------------------------------------------------------------------------------------
KINDS = ("options", "meta", "env")


def cases(kind: str, tmp: Path):
    """(fn, case, label) for every case of one of KINDS."""
    if kind == "options":
        yield from ((run_option, case, label) for label, case in option_cases())
    elif kind == "meta":
        yield from ((run_meta, case, label) for label, case in meta_cases(tmp))
    else:
        yield from ((run_env, case, label) for label, case in env_cases())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _invoke(args: list[str], out: Path) -> None:
    """Run `pcc ARGS` in-process: exit 0, or exit 2 with one `error:` line (then a PCError);
    afterwards `out` holds no temporary file, and after a refusal no file at all."""
    from typer.testing import CliRunner

    from pccompile.cli import app

    existed = set(out.rglob("*")) if out.exists() else set()
    r = CliRunner().invoke(app, args)
    left = set(out.rglob("*")) - existed if out.exists() else set()
    partial = [p for p in left if p.suffix == ".tmp" or ".tmp" in p.name]
    if partial:
        raise AssertionError(f"half-written files left: {sorted(map(str, partial))}")
    usage = r.exit_code == 2 and "Invalid value" in r.output and "Traceback" not in r.output  # typer's own
    if r.exit_code == 2 and (r.output.count("error:") == 1 or usage):
        if left:
            raise AssertionError(f"a refused command wrote {sorted(map(str, left))}")
        raise PCError("the command reported an error")
    if r.exit_code != 0 or (r.exception is not None and not isinstance(r.exception, SystemExit)):
        raise AssertionError(f"exit {r.exit_code}: {r.output[-300:]} {r.exception!r}")


def _check_finite(model) -> None:
    from fuzzing import _check_finite as check

    check(model)
