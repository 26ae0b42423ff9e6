"""How many devices a process gets: on a CPU, one per core, set before JAX starts its backend.

XLA:CPU runs a small training step (the batch-60 MLP of Figure 1) mostly on one thread (only
independent operations run concurrently: a 16-point sweep program uses ~1.33 of 2 cores,
results/bench/bench_sweep_cpu.txt), so a process with one CPU device leaves most of a multi-core
machine idle. JAX can present the host CPU as several
devices (`jax_num_cpu_devices`; `XLA_FLAGS=--xla_force_host_platform_device_count=N` on a jax that
lacks the option); the runner then trains independent programs on different devices at the same
time and spreads a stack of same-shape programs over them (bn_experiments.placement). GPUs and TPUs
are not affected: their devices are the physical ones.

The count can only be set before anything touches the backend (the first `jax.devices()`,
`device_put` or compiled call), which is why the CLI calls `configure` first thing; importing jax
is fine. The count never changes a number: a run's results are the same on 1 and on N devices
(tests/test_devices.py), so it is a machine setting, not part of the config.

Order of precedence: `configure(count)` (the CLI's `--devices=N`), then $BN_EXP_DEVICES, then a
count already forced in $XLA_FLAGS (left as it is), then the number of cores this process may use.
"""
from __future__ import annotations

import os
import re
import warnings

ENV = "BN_EXP_DEVICES"
CACHE_ENV = "BN_EXP_COMPILATION_CACHE"  # a folder, or "off"
_XLA_FLAG = "--xla_force_host_platform_device_count"
_chosen: dict = {}  # what `configure` asked for and why, for provenance.json


class DeviceError(ValueError):
    """A device count that is not a positive whole number; the message names where it came from."""


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_count(text: str, where: str) -> int:
    """`text` as a device count (a positive integer), or a DeviceError naming `where`."""
    try:
        count = int(str(text).strip())
    except ValueError:
        count = 0
    if count < 1:
        raise DeviceError(f"{where}={text!r}: give the number of devices as a positive whole "
                          f"number, e.g. {where}=2")
    return count


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge._backends)  # noqa: SLF001 (no public way to ask)
    except (ImportError, AttributeError):
        return False


def _forced_in_xla_flags() -> int | None:
    match = re.search(_XLA_FLAG + r"=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(match.group(1)) if match else None


def _set_xla_flag(count: int) -> None:
    flags = re.sub(_XLA_FLAG + r"=\d+", "", os.environ.get("XLA_FLAGS", "")).split()
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_XLA_FLAG}={count}"])


def configure(count: int | None = None) -> dict:
    """Sets the number of CPU devices before the backend starts (see the module docstring for the
    order of precedence); returns {"requested": N or None, "source": why}. Once the backend has
    started the count cannot change: the request is then recorded but has no effect (a warning if
    it was explicit and differs)."""
    source = "--devices"
    if count is None and os.environ.get(ENV, "").strip():
        count, source = parse_count(os.environ[ENV], ENV), ENV
    if count is None and _forced_in_xla_flags() is not None:
        return _choose(_forced_in_xla_flags(), "XLA_FLAGS")
    if count is None:
        count, source = cores(), "cores"
    import jax

    if _backend_started():
        have = len(jax.devices("cpu")) if jax.default_backend() == "cpu" else None
        if source != "cores" and have is not None and have != count:
            warnings.warn(f"{source}={count} has no effect: JAX already started with {have} CPU "
                          f"device(s) in this process", stacklevel=2)
        return _choose(count, f"{source} (ignored: backend already started)")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except AttributeError:  # a jax without the option reads the XLA flag when its backend starts
        _set_xla_flag(count)
    return _choose(count, source)


def _choose(count: int, source: str) -> dict:
    _chosen.update(requested=count, source=source)
    return {"requested": count, "source": source}


def compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache for this process; the folder, or None (off).

    Compiling is most of what a short run spends outside its training steps (seconds per program
    on a CPU: Figure 1's two programs compile for 4-8 s on 2 cores); a rerun, a resumed run or another experiment with a program of the same
    shape loads it instead. The cache holds the compiled executables, so the numbers are the
    same bits. Opt-in: BN_EXP_COMPILATION_CACHE=DIR uses DIR, =on uses
    $XDG_CACHE_HOME/bn-experiments/jax (~/.cache/...); unset or off, no cache. The folder is not bounded (jax's
    bound, `jax_compilation_cache_max_size`, fails when processes with and without it share a
    folder) and executables embed their dataset (tens of MB each on the full MNIST): delete it
    when it grows. Like the device count it is set
    up by a fresh process (the CLI): one whose backend already started (a notebook, a test
    session) keeps its own JAX settings."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if not setting or setting.lower() in ("off", "0", "false", "no", "none") or _backend_started():
        return None  # opt-in: an unbounded folder of executables is not written unasked
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = (os.path.join(base, "bn-experiments", "jax")
            if setting.lower() in ("on", "1", "true", "yes") else setting)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # an unwritable home: compile every time, as without a cache
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    _chosen["compilation_cache"] = path
    return path


def describe() -> dict:
    """What provenance.json records about the devices: platform, kind, how many this process
    sees and uses, and how the CPU device count was chosen."""
    import jax

    dev = jax.local_devices()[0]
    return {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count(),
            "local_count": jax.local_device_count(), "cores": cores(), **_chosen}
