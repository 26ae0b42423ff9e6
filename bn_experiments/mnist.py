"""The official MNIST (60,000 / 10,000): found in a data directory, checksum-verified, downloaded.

`data.source = "mnist"` (or `"mnist:<dir>"`) reads the four standard IDX files from a directory:
`<dir>` when given, else `$BN_EXP_DATA_DIR/mnist`, else the per-user cache
`$XDG_CACHE_HOME/bn_experiments/mnist` (`~/.cache/...`). Each file may be raw or gzip-compressed;
it is verified by the SHA-256 of its uncompressed bytes (the well-known hashes of the official
release: every faithful copy has them, while .gz bytes differ between copies). A file that is
missing is downloaded from the public mirrors in `MIRRORS`, tried in order (a progress bar; the
download is verified before it is written, and written atomically, so a failed or interrupted
download never leaves a file behind). With no network, one line says which directory to put the
files in. A file that is present but corrupt is an error naming it (it is never overwritten).

The paper trained on all 60,000 training images (Ioffe & Szegedy 2015, Sec. 4.1).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import urllib.error
import urllib.request
import zlib
from typing import Mapping, Sequence

from tqdm.auto import tqdm

# The raw (uncompressed) official files and their SHA-256.
FILES: Mapping[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Public mirrors of the gzip files (`<mirror><name>.gz`), tried in order.
MIRRORS: Sequence[str] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
ENV_DIR = "BN_EXP_DATA_DIR"
TIMEOUT_SECONDS = 30


class MnistError(ValueError):
    """The official MNIST could not be found or fetched; the message says what to do."""


def default_dir() -> pathlib.Path:
    """Where the files are looked up when the source names no directory."""
    if os.environ.get(ENV_DIR):
        return pathlib.Path(os.environ[ENV_DIR]).expanduser() / "mnist"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return pathlib.Path(cache).expanduser() / "bn_experiments" / "mnist"


def _raw_bytes(path: pathlib.Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _verify(path: pathlib.Path, sha256: str) -> None:
    try:
        digest = hashlib.sha256(_raw_bytes(path)).hexdigest()
    except (OSError, EOFError, zlib.error) as err:
        raise MnistError(f"{path}: cannot read it ({err}); delete it to download it again") from None
    if digest != sha256:
        raise MnistError(f"{path}: not the official file (sha256 of its uncompressed bytes is "
                         f"{digest[:12]}..., expected {sha256[:12]}...); delete it to download it "
                         f"again")


def _download(url: str, progress: bool) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (https mirrors)
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  disable=not progress, leave=False) as bar:
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


def _fetch(directory: pathlib.Path, name: str, sha256: str, mirrors: Sequence[str],
           progress: bool) -> None:
    """Downloads `name` from the first mirror that serves the official bytes; writes `name.gz`."""
    failures = []
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        try:
            data = _download(url, progress)
            raw = gzip.decompress(data)
        except (urllib.error.URLError, OSError, EOFError, zlib.error, ValueError) as err:
            failures.append(f"{url}: {getattr(err, 'reason', None) or err}")
            continue
        if hashlib.sha256(raw).hexdigest() != sha256:
            failures.append(f"{url}: wrong checksum")
            continue
        target = directory / f"{name}.gz"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return
    raise MnistError(
        f"official MNIST: {name} is not in {directory} and no mirror served it "
        f"({'; '.join(failures) or 'no mirrors'}); put the four files "
        f"{', '.join(FILES)} (raw or .gz) in {directory}, or point {ENV_DIR} at a folder with an "
        f"mnist/ subfolder holding them")


def ensure(directory: str | os.PathLike | None = None, *, files: Mapping[str, str] | None = None,
           mirrors: Sequence[str] | None = None, progress: bool = True) -> pathlib.Path:
    """The directory holding the verified official files, downloading the missing ones.
    `files` (name -> sha256 of the raw file) and `mirrors` default to `FILES` and `MIRRORS`."""
    files = FILES if files is None else files
    mirrors = MIRRORS if mirrors is None else mirrors
    directory = pathlib.Path(directory).expanduser() if directory else default_dir()
    for name, sha256 in files.items():
        present = [p for p in (directory / name, directory / f"{name}.gz") if p.is_file()]
        if present:
            _verify(present[0], sha256)
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise MnistError(f"official MNIST: cannot create {directory} ({err.strerror or err}); "
                             f"set {ENV_DIR} to a writable folder") from None
        _fetch(directory, name, sha256, mirrors, progress)
    return directory
