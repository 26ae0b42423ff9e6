"""Reading a config from the command line: the file `NAME[:ARG]` / `PATH[:ARG]` and its overrides.

`load` runs a config file's `get_config(ARG)`; every way a file can fail (a syntax error, no
`get_config`, an exception inside it, an ARG it does not accept) is one ConfigError line naming the
file and line, never a traceback. `apply_overrides` sets `--config.KEY=VALUE` overrides with the
type of the field they set (an integer, a number, true/false, a string, a tuple), so `steps=1.5`
names the field and says "an integer", and a scalar where a tuple is expected
(`--config.model.widths=100`) is an error showing the tuple syntax instead of a silent `(100,)`.
Validation of the result is `config.check`, the one gate shared with the library path.
"""
from __future__ import annotations

import pathlib
import traceback
import types
from typing import Any

import ml_collections

from bn_experiments import models
from bn_experiments.config import (SMOKE_KEY, ConfigError, _did_you_mean, _family,
                                   _refuse_foreign, config_dir, flatten, parse_value,
                                   resolve_path, set_dotted, set_model)

# The arguments a config file's `get_config(arg)` accepts when its module does not list its own
# in `ARGS`: none, or "quick" (a seconds-long smoke run, `configs/default.shrink`).
DEFAULT_ARGS = ("quick",)
def shipped_configs() -> list[str]:
    """Names of the shipped configs (`bn-exp run --config NAME`)."""
    return sorted(p.stem for p in config_dir().glob("*.py")
                  if not p.stem.startswith("_") and p.stem != "default")


def _where(file: str, err: BaseException) -> str:
    """`line N` of the innermost traceback frame inside `file` ('' when none is)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if pathlib.Path(f.filename).resolve() == pathlib.Path(file).resolve()]
    return f" line {frames[-1].lineno}" if frames else ""


def load(spec: str) -> ml_collections.ConfigDict:
    """The ConfigDict of `NAME[:ARG]` (a shipped config) or `PATH[:ARG]` (a file): its
    `get_config(ARG)`. Every way the file can fail is one ConfigError line naming the file (and
    line): a syntax error, no `get_config`, an exception inside it, a result that is not a
    ConfigDict, an ARG the file does not accept (its module's `ARGS`, else `DEFAULT_ARGS`)."""
    path = resolve_path(spec)
    file, _, arg = path.partition(":")
    name = pathlib.Path(file).stem
    module_name = f"_bn_exp_config_{name}"
    module = types.ModuleType(module_name)
    module.__file__ = file
    try:  # compiled here, not imported: no __pycache__ is written beside the user's file
        exec(compile(pathlib.Path(file).read_bytes(), file, "exec"), module.__dict__)
    except SyntaxError as err:
        raise ConfigError(f"config file {file} line {err.lineno}: {err.msg} (SyntaxError); "
                          f"fix the file") from None
    except Exception as err:  # noqa: BLE001 (any error of the user's file is reported the same way)
        raise ConfigError(f"config file {file}{_where(file, err)}: {type(err).__name__}: {err}; "
                          f"fix the file") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {file} defines no get_config(arg); a config file returns "
                          f"its ml_collections.ConfigDict from get_config(arg=None)")
    known = tuple(getattr(module, "ARGS", DEFAULT_ARGS))
    if arg and arg not in known:
        raise ConfigError(f"--config {spec!r}: unknown config argument {arg!r}; {name} accepts "
                          + (", ".join(f"{name}:{a}" for a in known) + f" or plain {name}"
                             if known else f"no argument (plain {name})"))
    try:
        cfg = get_config(arg or None)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"config file {file}{_where(file, err)}: {type(err).__name__} in "
                          f"get_config({arg or None!r}): {err}; fix the file") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"config file {file}: get_config returned a {type(cfg).__name__}, "
                          f"not an ml_collections.ConfigDict")
    return cfg


def _leaf(cfg: ml_collections.ConfigDict, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _typed(key: str, text: str, old: Any) -> Any:
    """`text` (a command-line value) as the type of the field's current value `old`."""
    shown = f"--config.{key}={text}"
    literal = parse_value(text)
    if isinstance(old, bool):
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.strip().lower() not in words:
            raise ConfigError(f"{shown}: {key} is true or false")
        return words[text.strip().lower()]
    if isinstance(old, int):
        if isinstance(literal, bool) or not isinstance(literal, int):
            raise ConfigError(f"{shown}: {key} must be an integer, e.g. --config.{key}={old}")
        return literal
    if isinstance(old, float):
        try:
            return float(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{shown}: {key} must be a number, e.g. --config.{key}={old}") from None
    if isinstance(old, str):
        return literal if isinstance(literal, str) else text.strip()
    if isinstance(old, tuple):
        if isinstance(literal, list):
            literal = tuple(literal)
        if not isinstance(literal, tuple):
            one = text.strip() or "..."
            raise ConfigError(f"{shown}: {key} is a tuple; write --config.{key}='({one},)' for "
                              f"one value or --config.{key}='({one}, {one})' for several")
        return literal
    return literal


def apply_overrides(cfg: ml_collections.ConfigDict,
                    overrides: list[tuple[str, str]]) -> ml_collections.ConfigDict:
    """Sets `--config.KEY=VALUE` overrides (KEY dotted, VALUE the command-line text) on `cfg`, in
    place: each VALUE is read as the type of the field it sets, an unknown KEY gets a did-you-mean.
    `model.name` is applied first, with `set_model` (it swaps the model section), so the new
    family's own fields can be overridden after it."""
    for key, text in overrides:
        if key == "model.name":
            set_model(cfg, text.strip())
    for key, text in overrides:
        if key == "model.name":
            continue
        known = list(flatten(cfg))
        if key not in known:
            if key == SMOKE_KEY:
                cfg[SMOKE_KEY] = _typed(key, text, False)
                continue
            _refuse_foreign(key, _family(flatten(cfg).get("model.name", models.DEFAULT)))
            raise ConfigError(f"config key {key!r} is unknown{_did_you_mean(key, known)}")
        set_dotted(cfg, key, _typed(key, text, _leaf(cfg, key)))
    return cfg
