"""The workdir guard: one place that decides whether a workdir may be used and keeps it consistent.

`Workdir.open(path, restart=...)` (a context manager) is the only way the runner touches a workdir:

- the path must be a directory we can create AND write into: an existing but unwritable folder,
  or one on a read-only filesystem, is the same one-line `WorkdirError` as one that cannot be
  created, raised before anything is trained or written;
- one process at a time: an exclusive `flock` on `WORKDIR/.lock` is held while the workdir is in
  use, so a second `bn-exp run` on it is refused with one line naming the holder's pid. The kernel
  drops the lock when its process dies (even by SIGKILL), so a stale lock never blocks; the lock
  file is removed when the holder is done;
- a finished workdir (summary.json) is refused without `restart`; `restart` removes every output
  of the previous run, its figures (*.png) included, so no old figure sits beside the new config;
- each finished run keeps its summary row (`points/<run>.json`) AND its full-resolution data
  (`points/<run>.npz`), so curves.npz holds every run however many times the work was resumed;
- provenance.json lists every invocation that worked on it (command, commit, start, wall time,
  the runs it trained, how it ended), so a resumed result says it was resumed.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import io
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from bn_experiments import summary as summary_lib

try:
    import fcntl
except ImportError:  # not POSIX: no lock (documented in the README)
    fcntl = None

OUTPUT_FILES = ("config.json", "metrics.jsonl", "provenance.json", "summary.json", "curves.npz")
OUTPUT_DIRS = ("points", "checkpoints")
LOCK = ".lock"


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked; the message says what to do."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


class Workdir:
    """A workdir held by this process (see the module docstring); use `Workdir.open`."""

    def __init__(self, path: pathlib.Path, lock_fd: int | None):
        self.path = path
        self._lock_fd = lock_fd

    # ------------------------------------------------------------------------------ opening

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike, *, restart: bool = False):
        path = pathlib.Path(path)
        if path.exists() and not path.is_dir():
            raise WorkdirError(f"--workdir {path}: exists and is not a directory; choose another path")
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WorkdirError(f"--workdir {path}: cannot create it ({_reason(err)}); "
                               f"choose a writable path") from None
        try:
            _check_writable(path)
            fd = _lock(path)
        except WorkdirError:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        held = cls(path, fd)
        try:
            if (path / "summary.json").exists() and not restart:
                raise WorkdirError(f"--workdir {path} already holds a finished run (summary.json); "
                                   f"pass --restart to overwrite it or choose another --workdir")
            if restart:
                held.clear()
            yield held
        finally:
            held._unlock()

    def clear(self) -> None:
        """Removes every output of a previous run: files, points, checkpoints and figures."""
        for name in OUTPUT_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in OUTPUT_DIRS:
            shutil.rmtree(self.path / name, ignore_errors=True)
        for png in self.path.glob("*.png"):
            png.unlink(missing_ok=True)

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        # Removed while still held, so a process waiting on this inode finds it gone and retries.
        (self.path / LOCK).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    # --------------------------------------------------------------------------- finished runs

    def point_path(self, name: str, suffix: str = ".json") -> pathlib.Path:
        return self.path / "points" / (re.sub(r"[^A-Za-z0-9._=,+-]", "_", name) + suffix)

    def finished(self, names: list[str]) -> dict[str, dict]:
        """The summary rows of the runs among `names` that a previous invocation finished."""
        done = {}
        for name in names:
            path = self.point_path(name)
            if path.exists():
                done[name] = json.loads(path.read_text())
        return done

    def save_point(self, name: str, doc: dict, arrays: dict[str, np.ndarray]) -> dict:
        """Keeps a finished run: its full-resolution arrays first, then its summary row (whose
        presence marks the run finished). Returns the row as written."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # stored: float32 curves deflate by ~13%, at 12x the time
        summary_lib.atomic_write(self.point_path(name, ".npz"), buffer.getvalue())
        text = summary_lib.dumps(doc)
        summary_lib.atomic_write(self.point_path(name), text)
        return json.loads(text)

    def write_curves(self, names: list[str]) -> list[str]:
        """curves.npz from every finished run's full-resolution data, `<run>/<metric>` keys, in
        the order of `names`; returns the runs whose data is missing (finished by an older
        version that did not keep it)."""
        arrays, missing = {}, []
        for name in names:
            path = self.point_path(name, ".npz")
            if not path.exists():
                missing.append(name)
                continue
            with np.load(path) as data:
                arrays.update({f"{name}/{k}": data[k] for k in data.files})
        if arrays:
            # Stored, not deflated: per-step float32 curves shrink by ~13% (Figure 1's 26 MB to
            # 23 MB) for ~1 s of compression at the end of every run.
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            summary_lib.atomic_write(self.path / "curves.npz", buffer.getvalue())
        return missing

    # ------------------------------------------------------------------------------ provenance

    def begin(self, record: dict) -> None:
        """Appends this invocation (outcome "running") to provenance.json's `invocations`; one an
        earlier process left "running" did not finish (it was killed)."""
        old = self._provenance()
        invocations = [dict(i, outcome="killed") if i.get("outcome") == "running" else i
                       for i in old.get("invocations", [])]
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        invocations.append({**record, "started": started, "outcome": "running"})
        self._write_provenance({**old, "invocations": invocations})

    def end(self, outcome: str, *, wall_seconds: float, trained: list[str],
            program_seconds: dict[str, float], machine: dict | None = None) -> None:
        """Records how this invocation ended; the top level sums every invocation's wall time."""
        doc = self._provenance()
        invocations = doc.get("invocations") or [{}]
        invocations[-1].update(outcome=outcome, wall_seconds=round(wall_seconds, 2),
                               trained=trained,
                               program_seconds={k: round(v, 2) for k, v in program_seconds.items()})
        out = {"command": invocations[0].get("command"),
               "git_commit": invocations[-1].get("git_commit"),
               **{k: v for k, v in doc.items() if k not in ("command", "git_commit", "invocations")},
               **(machine or {}),
               "wall_seconds": round(sum(i.get("wall_seconds") or 0 for i in invocations), 2),
               "program_seconds": {k: v for i in invocations
                                   for k, v in (i.get("program_seconds") or {}).items()},
               "resumed": len(invocations) > 1, "invocations": invocations}
        self._write_provenance(out)

    def _provenance(self) -> dict:
        try:
            doc = json.loads((self.path / "provenance.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _write_provenance(self, doc: dict) -> None:
        summary_lib.atomic_write(self.path / "provenance.json", json.dumps(doc, indent=1) + "\n")


def _check_writable(path: pathlib.Path) -> None:
    """Creates and removes a file in `path`: the same error as an uncreatable path if it fails."""
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise WorkdirError(f"--workdir {path}: cannot write into it ({_reason(err)}); "
                           f"choose a writable path") from None


def _lock(path: pathlib.Path) -> int | None:
    """An exclusive lock on `path/.lock` (its fd), or a WorkdirError naming the holder."""
    if fcntl is None:
        return None
    lock = path / LOCK
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirError(
                    f"--workdir {path} is in use by another bn-exp (pid {holder}); wait for it "
                    f"to finish or choose another --workdir") from None
            raise WorkdirError(f"--workdir {path}: cannot lock it ({_reason(err)}); "
                               f"choose another path") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the previous holder removed the file as we opened it: take the new one
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


# ------------------------------------------------------------------ what provenance records


def git_commit() -> str | None:
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


def machine() -> dict:
    """What provenance.json records about the software and device (no timings)."""
    from importlib import metadata

    from bn_experiments import devices
    versions = {}
    for pkg in ("bn-experiments", "jax", "jaxlib", "flax", "optax", "numpy", "ml-collections",
                "orbax-checkpoint"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"python": platform.python_version(), "versions": versions,
            "device": devices.describe()}


def command() -> str:
    argv0 = pathlib.Path(sys.argv[0]).name
    return " ".join(["bn-exp" if argv0 == "bn-exp" else sys.argv[0], *sys.argv[1:]])
