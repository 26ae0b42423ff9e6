"""Models built on the functional BatchNorm: pure `init` / `apply` over explicit params and state."""
from bn_experiments.models import mlp

__all__ = ["mlp"]
