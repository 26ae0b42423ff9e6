"""Checkpoints of a training program's full state, so a killed run resumes to the same numbers.

A checkpoint holds the device carry (params, BN state, optimizer state, step, divergence flags,
data and noise keys) and everything the host has recorded so far (per-step metrics, evaluations,
the previous evaluation's probe, the length of metrics.jsonl). It is written with
orbax-checkpoint at a chunk boundary; orbax writes into a temporary folder and renames it when
complete, so a run killed while saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import logging
import pathlib
import shutil
from typing import Any

import jax
import numpy as np

_KEYS = ("data_key", "noise_key")


def _no_target_warning(record: logging.LogRecord) -> bool:
    return "expects a target tree" not in record.getMessage()


def _to_host(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.device_get(tree))


class Checkpointer:
    """Save/restore one program's state under `directory` (keeps the latest only)."""

    def __init__(self, directory: str | pathlib.Path):
        self.directory = pathlib.Path(directory)
        self._manager = None

    def _mngr(self):
        if self._manager is None:
            import orbax.checkpoint as ocp  # imported lazily: it takes a second or two
            self._ocp = ocp
            self._manager = ocp.CheckpointManager(
                self.directory.absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=1))
        return self._manager

    def exists(self) -> bool:
        return self.directory.is_dir() and any(p.name.isdigit() for p in self.directory.iterdir())

    def save(self, step: int, carry: dict, host: dict) -> None:
        """Writes `carry` (a pytree of device arrays, typed PRNG keys allowed) and `host` (a dict
        of numpy arrays) as checkpoint `step`, synchronously."""
        carry = {**carry, **{k: jax.random.key_data(carry[k]) for k in _KEYS}}
        leaves = jax.tree.leaves(carry)
        tree = {"carry": {f"{i:04d}": x for i, x in enumerate(_to_host(leaves))}, "host": host}
        mngr = self._mngr()
        mngr.save(step, args=self._ocp.args.StandardSave(tree), force=True)
        mngr.wait_until_finished()

    def restore(self, like_carry: dict) -> tuple[int, dict, dict]:
        """(step, carry, host) of the latest checkpoint; `like_carry` gives the carry's structure."""
        mngr = self._mngr()
        step = mngr.latest_step()
        # Restored without a target tree (the host part's shapes are only known from the file);
        # older orbax warns about that on stderr, which would break the CLI's one-line messages.
        absl_logger = logging.getLogger("absl")
        absl_logger.addFilter(_no_target_warning)
        try:
            tree = mngr.restore(step, args=self._ocp.args.StandardRestore())
        finally:
            absl_logger.removeFilter(_no_target_warning)
        like = {**like_carry, **{k: jax.random.key_data(like_carry[k]) for k in _KEYS}}
        treedef = jax.tree.structure(like)
        leaves = [tree["carry"][k] for k in sorted(tree["carry"])]
        if [np.shape(x) for x in leaves] != [np.shape(x) for x in jax.tree.leaves(like)]:
            from bn_experiments.workdir import WorkdirError  # (workdir imports this module)
            raise WorkdirError(
                f"the checkpoint in {self.directory} holds another training state than this "
                f"version of bn-experiments trains (written by an older one?); rerun with "
                f"--restart to train from step 0")
        carry = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
        carry.update({k: jax.random.wrap_key_data(carry[k]) for k in _KEYS})
        host = jax.tree.map(np.asarray, tree["host"])
        return int(step), carry, host

    def delete(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        shutil.rmtree(self.directory, ignore_errors=True)
