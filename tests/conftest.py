"""Test set-up: four fake CPU devices (for the pmap/shard_map parity tests), set before JAX starts."""
import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
