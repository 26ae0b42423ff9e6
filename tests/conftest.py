"""Test set-up: four fake CPU devices (for the pmap/shard_map parity tests), set before JAX starts."""
import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Also in the environment, so the `bn-exp` subprocesses of the tests get the same four devices: with
# an older jax (the oldest supported set) the device count changes the last bits of some results,
# and the kill/interrupt-and-resume tests compare a subprocess's numbers with this process's.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402

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
