"""Test set-up: four fake CPU devices (for the pmap/shard_map parity tests), set before JAX starts."""
import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Also in the environment, so the `bn-exp` subprocesses of the tests get the same four devices: with
# an older jax (the oldest supported set) the device count changes the last bits of some results,
# and the kill/interrupt-and-resume tests compare a subprocess's numbers with this process's.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4").strip()

# One persistent compilation cache for the session: this process and its `bn-exp` subprocesses
# (the CLI turns it on from BN_EXP_COMPILATION_CACHE). Many tests build the same small programs
# again (the interrupt, kill, lock and restart tests start the same configs again and again), and
# loading what was compiled before cut those three modules from 139 s to 98 s on 2 cores. The
# cache holds compiled executables, so the numbers are the same bits (tests/test_devices.py
# compares summaries with and without it, and sets its own); tracing is unchanged, so the trace
# counters still count. Removed when the session ends.
_cache = None
if "BN_EXP_COMPILATION_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="bn-exp-test-compilation-cache-")
    os.environ["BN_EXP_COMPILATION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402

if _cache is not None:
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

jax.config.update("jax_num_cpu_devices", 4)

# The oldest supported jax (pyproject.toml, .ci/oldest.txt) predates two names the tests use:
# `jax.enable_x64` (jax 0.8; before it jax.experimental.enable_x64) and `jax.shard_map` (jax 0.6.1;
# before it jax.experimental.shard_map.shard_map). The package itself uses neither.
if not hasattr(jax, "enable_x64"):
    from jax.experimental import enable_x64 as _enable_x64
    jax.enable_x64 = _enable_x64
if not hasattr(jax, "shard_map"):
    from jax.experimental.shard_map import shard_map as _shard_map
    jax.shard_map = _shard_map
