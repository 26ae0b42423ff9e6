"""Tests for bn_experiments.data (loaders, errors, batch order)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_experiments import data
from bn_experiments.data import DataError, Dataset

ASSETS = pathlib.Path(data.__file__).parent / "assets"
FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def embedded() -> Dataset:
    return data.load("mnist_embedded")


# ---------------------------------------------------------------------------- mnist_embedded


def test_embedded_shapes_and_dtypes(embedded):
    ds = embedded
    assert ds.name == "mnist_embedded"
    assert ds.x_train.shape == (8000, 28, 28, 1) and ds.x_test.shape == (2000, 28, 28, 1)
    assert ds.y_train.shape == (8000,) and ds.y_test.shape == (2000,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert isinstance(ds.x_train, np.ndarray)
    assert ds.input_shape == (28, 28, 1) and ds.num_train == 8000 and ds.num_test == 2000
    assert ds.num_classes == 10
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        # exact uint8 / 255 values
        np.testing.assert_array_equal(np.rint(x * 255) / np.float32(255), x)
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))


def test_embedded_stratified_split(embedded):
    tr = np.bincount(embedded.y_train, minlength=10)
    te = np.bincount(embedded.y_test, minlength=10)
    share = te / (tr + te)
    assert np.all(np.abs(share - 0.2) < 0.5 / (tr + te) + 1e-12)  # off by < 1 example per class
    # no example in both splits
    a = embedded.x_train.reshape(8000, -1)
    b = embedded.x_test.reshape(2000, -1)
    train_rows = {r.tobytes() for r in (a * 255).astype(np.uint8)}
    assert not any(r.tobytes() in train_rows for r in (b * 255).astype(np.uint8))
    # the order is shuffled, not class-sorted
    assert len(np.unique(embedded.y_train[:100])) == 10


def test_embedded_provenance_matches_asset():
    raw = (ASSETS / "mnist_embedded.npz").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    assert digest == data.MNIST_EMBEDDED_SHA256
    meta = json.loads((ASSETS / "mnist_embedded.json").read_text())
    assert meta["sha256"] == digest and meta["size_bytes"] == len(raw)
    assert meta["source"]["tarball_sha1_shasum"] == "b83efc6af88d8db53b196665acdb50cf524bd2ba"
    counts = meta["per_class_counts"]
    assert sum(c["train"] for c in counts.values()) == 8000
    assert sum(c["test"] for c in counts.values()) == 2000


def test_embedded_checksum_mismatch(monkeypatch):
    monkeypatch.setattr(data, "MNIST_EMBEDDED_SHA256", "0" * 64)
    with pytest.raises(DataError, match=r"mnist_embedded\.npz.*sha256.*build_mnist_embedded"):
        data.load("mnist_embedded")


def test_embedded_corrupted_file(monkeypatch, tmp_path):
    raw = bytearray((ASSETS / "mnist_embedded.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "mnist_embedded.npz"
    bad.write_bytes(bytes(raw))
    monkeypatch.setattr(data, "_embedded_path", lambda: bad)
    with pytest.raises(DataError, match="reinstall"):
        data.load()


def test_embedded_missing_file(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_embedded_path", lambda: tmp_path / "nope.npz")
    with pytest.raises(DataError, match=r"nope\.npz"):
        data.load()


def test_standardize(embedded):
    ds = data.load("mnist_embedded", standardize=True)
    x = embedded.x_train.astype(np.float64)
    assert ds.pixel_mean == pytest.approx(x.mean()) and ds.pixel_std == pytest.approx(x.std())
    assert abs(float(ds.x_train.mean())) < 1e-5 and float(ds.x_train.std()) == pytest.approx(1.0, abs=1e-5)
    assert ds.x_train.dtype == np.float32
    # the test split uses the *training* statistics
    expected = (embedded.x_test.astype(np.float64) - x.mean()) / x.std()
    np.testing.assert_allclose(ds.x_test, expected, atol=1e-5)
    np.testing.assert_array_equal(ds.y_test, embedded.y_test)
    assert embedded.pixel_mean == 0.0 and embedded.pixel_std == 1.0


def _correlated(n=4000, seed=0) -> Dataset:
    """Full-rank correlated inputs (8x8 images, pixel covariance far from diagonal)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(64, 64)) * np.linspace(0.05, 2.0, 64)
    x = (rng.normal(size=(n + 500, 64)) @ mix + 3.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = rng.integers(0, 10, n + 500).astype(np.int32)
    return Dataset("correlated", x[:n], y[:n], x[n:], y[n:])


def _cov(x):
    return np.cov(np.asarray(x, np.float64).reshape(len(x), -1), rowvar=False, bias=True)


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitened_training_inputs_have_identity_covariance(kind):
    ds = _correlated()
    out = data.whitened(ds, kind, epsilon=0.0)
    assert out.whitening == kind and out.x_train.shape == ds.x_train.shape
    assert out.x_train.dtype == np.float32
    np.testing.assert_allclose(out.x_train.reshape(len(ds.x_train), -1).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(_cov(out.x_train), np.eye(64), atol=1e-3)
    assert np.abs(_cov(ds.x_train) - np.diag(np.diag(_cov(ds.x_train)))).max() > 1.0


def test_zca_is_symmetric_and_closest_to_the_input_pca_is_its_rotation():
    ds = _correlated()
    zca, pca = (data.whitened(ds, k, epsilon=0.0) for k in ("zca", "pca"))
    flat = lambda d: np.asarray(d.x_train, np.float64).reshape(len(d.x_train), -1)  # noqa: E731
    centered = flat(ds) - flat(ds).mean(0)
    w = np.linalg.lstsq(centered, flat(zca), rcond=None)[0]  # the linear map ZCA applied
    np.testing.assert_allclose(w, w.T, atol=1e-3)
    assert np.linalg.norm(flat(zca) - centered) < np.linalg.norm(flat(pca) - centered)
    # PCA is ZCA rotated: every whitened example keeps its length
    np.testing.assert_allclose(np.linalg.norm(flat(pca), axis=1), np.linalg.norm(flat(zca), axis=1),
                               rtol=1e-3)


def test_whitening_uses_training_statistics_and_epsilon_damps_flat_directions():
    ds = _correlated()
    out = data.whitened(ds, "zca", epsilon=0.0)
    test = np.asarray(out.x_test, np.float64).reshape(len(ds.x_test), -1)
    assert np.abs(test.mean(0)).max() > 1e-3  # not re-centered on the test split
    other_test = dataclasses.replace(ds, x_test=ds.x_test[::-1] * 2)
    np.testing.assert_array_equal(data.whitened(other_test, "zca", epsilon=0.0).x_train, out.x_train)
    std = data.whitened(ds, "standardize", epsilon=0.0)
    flat = np.asarray(std.x_train, np.float64).reshape(len(ds.x_train), -1)
    np.testing.assert_allclose(flat.std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-4)
    assert np.abs(_cov(std.x_train) - np.eye(64)).max() > 0.1  # standardized, still correlated
    # A constant pixel stays 0 instead of dividing by zero; epsilon shrinks small variances.
    const = Dataset("c", np.zeros((10, 2, 2, 1), np.float32), np.zeros(10, np.int32),
                    np.ones((3, 2, 2, 1), np.float32), np.zeros(3, np.int32))
    for kind in ("standardize", "pca", "zca"):
        out = data.whitened(const, kind)
        assert np.all(out.x_train == 0) and np.all(np.isfinite(out.x_test))
    damped = data.whitened(ds, "pca", epsilon=1e6)
    assert float(np.asarray(damped.x_train).std()) < 0.1


def test_load_whiten_none_is_unchanged_and_bad_input_is_refused(embedded):
    plain = data.load("mnist_embedded", whiten="none")
    np.testing.assert_array_equal(plain.x_train, embedded.x_train)
    assert plain.whitening == "none" and embedded.whitening == "none"
    zca = data.load("synthetic:512:64", whiten="zca")
    assert zca.whitening == "zca" and zca.x_train.shape == (512, 28, 28, 1)
    with pytest.raises(DataError, match="whiten='pcaa' is unknown"):
        data.load("synthetic:64:8", whiten="pcaa")
    with pytest.raises(DataError, match="choose one"):
        data.load("synthetic:64:8", whiten="zca", standardize=True)


def test_determinism(embedded):
    again = data.load("mnist_embedded")
    np.testing.assert_array_equal(again.x_train, embedded.x_train)
    np.testing.assert_array_equal(again.y_test, embedded.y_test)
    s1, s2 = data.load("synthetic"), data.load("synthetic")
    np.testing.assert_array_equal(s1.x_train, s2.x_train)
    np.testing.assert_array_equal(s1.y_test, s2.y_test)


def test_to_device(embedded):
    d = data.to_device(embedded)
    assert isinstance(d.x_train, jax.Array) and isinstance(d.y_test, jax.Array)
    assert d.x_train.shape == embedded.x_train.shape and d.y_train.dtype == jnp.int32
    assert d.input_shape == (28, 28, 1) and d.num_classes == 10 and d.name == embedded.name
    np.testing.assert_array_equal(np.asarray(d.y_test), embedded.y_test)


# ---------------------------------------------------------------------------- idx


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x800 | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def _write_idx_dir(root: pathlib.Path, *, gz: bool, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        b = _idx_bytes(arr)
        if gz:
            (root / (name + ".gz")).write_bytes(gzip.compress(b, mtime=0))
        else:
            (root / name).write_bytes(b)
    return arrays


def _path(root: pathlib.Path, name: str) -> pathlib.Path:
    return root / name if (root / name).exists() else root / (name + ".gz")


def _rewrite(root: pathlib.Path, name: str, content: bytes) -> None:
    p = _path(root, name)
    p.write_bytes(gzip.compress(content, mtime=0) if p.suffix == ".gz" else content)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    arrays = _write_idx_dir(tmp_path, gz=gz)
    ds = data.load(f"idx:{tmp_path}")
    assert ds.x_train.shape == (12, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["train-images-idx3-ubyte"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays["t10k-images-idx3-ubyte"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)


def test_idx_missing_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load(f"idx:{tmp_path / 'absent'}")
    with pytest.raises(DataError, match="needs a directory"):
        data.load("idx:")


def test_idx_missing_file(tmp_path):
    _write_idx_dir(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as ei:
        data.load(f"idx:{tmp_path}")
    msg = str(ei.value)
    assert "t10k-labels-idx1-ubyte" in msg and "t10k-labels-idx1-ubyte.gz" in msg and str(tmp_path) in msg


@pytest.mark.parametrize("gz", [False, True])
def test_idx_bad_magic(tmp_path, gz):
    arrays = _write_idx_dir(tmp_path, gz=gz)
    # a label file where an image file belongs
    _rewrite(tmp_path, "train-images-idx3-ubyte", _idx_bytes(arrays["train-labels-idx1-ubyte"]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*bad magic number 2049"):
        data.load(f"idx:{tmp_path}")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    arrays = _write_idx_dir(tmp_path, gz=gz)
    full = _idx_bytes(arrays["t10k-images-idx3-ubyte"])
    _rewrite(tmp_path, "t10k-images-idx3-ubyte", full[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*truncated"):
        data.load(f"idx:{tmp_path}")
    _rewrite(tmp_path, "t10k-images-idx3-ubyte", full[:2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*truncated"):
        data.load(f"idx:{tmp_path}")
    _rewrite(tmp_path, "t10k-images-idx3-ubyte", full + b"\0")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*trailing"):
        data.load(f"idx:{tmp_path}")


def test_idx_truncated_gzip_stream(tmp_path):
    _write_idx_dir(tmp_path, gz=True)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz"):
        data.load(f"idx:{tmp_path}")


def test_idx_count_mismatch(tmp_path):
    _write_idx_dir(tmp_path, gz=False)
    _rewrite(tmp_path, "train-labels-idx1-ubyte", _idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*11 labels.*12 images"):
        data.load(f"idx:{tmp_path}")


def test_idx_label_out_of_range(tmp_path):
    _write_idx_dir(tmp_path, gz=False)
    _rewrite(tmp_path, "t10k-labels-idx1-ubyte", _idx_bytes(np.array([0, 1, 2, 3, 200])))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*\[0, 10\)"):
        data.load(f"idx:{tmp_path}")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="apt package dataset-fashion-mnist not installed")
def test_idx_fashion_mnist_if_installed():
    ds = data.load(f"idx:{FASHION_DIR}")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.array_equal(np.bincount(ds.y_train), np.full(10, 6000))


# ---------------------------------------------------------------------------- tfds, synthetic, misc


def test_from_arrays_conversion():
    rng = np.random.default_rng(0)
    train = {"image": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), "label": np.arange(6) % 4}
    test = {"image": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), "label": np.array([3, 0, 1])}
    ds = data._from_arrays("tfds:fake", train, test, num_classes=10)
    assert ds.name == "tfds:fake" and ds.num_classes == 10
    assert ds.x_train.shape == (6, 32, 32, 3) and ds.x_train.dtype == np.float32
    assert ds.input_shape == (32, 32, 3) and ds.y_test.dtype == np.int32
    np.testing.assert_array_equal(ds.x_test, test["image"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, train["label"])
    # default num_classes = max label + 1; grayscale (N, H, W) gets a channel axis
    gray = {"image": np.zeros((2, 28, 28), np.uint8), "label": np.array([0, 6])}
    ds2 = data._from_arrays("g", gray, gray)
    assert ds2.num_classes == 7 and ds2.input_shape == (28, 28, 1)
    with pytest.raises(DataError, match="uint8"):
        data._from_arrays("f", {"image": np.zeros((1, 2, 2, 1), np.float32), "label": [0]}, gray)
    with pytest.raises(DataError, match="labels must be in"):
        data._from_arrays("f", gray, gray, num_classes=3)
    with pytest.raises(DataError, match="'image' and 'label'"):
        data._from_arrays("f", {"image": gray["image"]}, gray)


def test_tfds_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(DataError, match=r"pip install 'bn-experiments\[tfds\]'"):
        data.load("tfds:cifar10")


def test_synthetic():
    ds = data.load("synthetic")
    assert ds.x_train.shape == (2048, 28, 28, 1) and ds.x_test.shape == (512, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert np.all(np.bincount(ds.y_train, minlength=10) >= 204) and ds.num_classes == 10
    # learnable: nearest class mean on train generalizes well above chance
    x = ds.x_train.reshape(ds.num_train, -1)
    means = np.stack([x[ds.y_train == c].mean(0) for c in range(10)])
    xt = ds.x_test.reshape(ds.num_test, -1)
    pred = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == ds.y_test).mean() > 0.5
    small = data.load("synthetic:100")
    assert small.num_train == 100 and small.num_test == 25
    assert data.load("synthetic:40:7").num_test == 7
    for bad in ("synthetic:", "synthetic:abc", "synthetic:0", "synthetic:1:2:3"):
        with pytest.raises(DataError, match="synthetic"):
            data.load(bad)


def test_unknown_source():
    with pytest.raises(DataError) as ei:
        data.load("mnist_full")
    msg = str(ei.value)
    for form in ("mnist_embedded", "mnist", "idx:<dir>", "tfds:<name>", "synthetic"):
        assert form in msg


def test_dataset_validation():
    x, y = np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int32)
    with pytest.raises(DataError, match="NHWC"):
        Dataset("d", x[..., 0], y, x, y)
    with pytest.raises(DataError, match="y_test"):
        Dataset("d", x, y, x, y[:3])


# ---------------------------------------------------------------------------- batch_indices


def _reference_stream(key, n_epochs, num_examples):
    return np.concatenate([np.asarray(jax.random.permutation(jax.random.fold_in(key, e), num_examples))
                           for e in range(n_epochs)])


@pytest.mark.parametrize("num_examples,batch_size", [(10, 4), (10, 10), (7, 3), (5, 12)])
def test_batch_indices_matches_definition(num_examples, batch_size):
    key = jax.random.key(3)
    num_steps = 9
    got = np.asarray(data.batch_indices(key, 0, num_steps, batch_size, num_examples))
    assert got.shape == (num_steps, batch_size) and got.dtype == np.int32
    stream = _reference_stream(key, num_steps * batch_size // num_examples + 2, num_examples)
    np.testing.assert_array_equal(got.reshape(-1), stream[: num_steps * batch_size])
    # a window starting late in the stream
    later = np.asarray(data.batch_indices(key, 5, 4, batch_size, num_examples))
    np.testing.assert_array_equal(later.reshape(-1), stream[5 * batch_size: 9 * batch_size])


def test_batch_indices_chunking_invariant():
    key = jax.random.PRNGKey(0)  # legacy uint32 keys work too
    whole = np.asarray(data.batch_indices(key, 0, 30, 16, 100))
    for chunk in (1, 3, 7, 30):
        parts = [np.asarray(data.batch_indices(key, s, min(chunk, 30 - s), 16, 100)) for s in range(0, 30, chunk)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_batch_indices_epochs_are_permutations():
    key = jax.random.key(1)
    n, b = 60, 12
    idx = np.asarray(data.batch_indices(key, 0, 4 * n // b, b, n)).reshape(4, n)
    for epoch in idx:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
    assert not np.array_equal(idx[0], idx[1])  # epochs are reshuffled
    other = np.asarray(data.batch_indices(jax.random.key(2), 0, 5, b, n))
    assert not np.array_equal(other, idx.reshape(-1, b)[:5])


def test_batch_indices_under_jit():
    key = jax.random.key(7)
    traces = []

    def traced(k, s, *static):
        traces.append(1)
        return data.batch_indices(k, s, *static)

    f = jax.jit(traced, static_argnums=(2, 3, 4))
    whole = np.asarray(data.batch_indices(key, 0, 20, 8, 50))
    for start in (0, 3, 11, 12):
        got = f(key, jnp.int32(start), 8, 8, 50)
        np.testing.assert_array_equal(np.asarray(got), whole[start:start + 8])
    assert len(traces) == 1  # one trace for all (traced) start steps

    # inside a scanned training loop, carrying the step counter
    def body(step, _):
        return step + 1, data.batch_indices(key, step, 1, 8, 50)[0]
    _, scanned = jax.jit(lambda s: jax.lax.scan(body, s, None, length=20))(jnp.int32(0))
    np.testing.assert_array_equal(np.asarray(scanned), whole)


def test_batch_indices_rejects_bad_static_args():
    with pytest.raises(ValueError, match="batch_size"):
        data.batch_indices(jax.random.key(0), 0, 2, 0, 10)
    with pytest.raises(ValueError, match="num_examples"):
        data.batch_indices(jax.random.key(0), 0, 2, 3, 2.5)


@pytest.mark.parametrize("n", [1, 2, 3, 100, 8000, 2**16, 2**16 + 1])
def test_permutation_is_jax_random_permutation_bit_for_bit(n):
    for key in (jax.random.key(0), jax.random.key(7), jax.random.PRNGKey(3)):
        np.testing.assert_array_equal(np.asarray(jax.jit(data.permutation, static_argnums=1)(key, n)),
                                      np.asarray(jax.random.permutation(key, n)))


def test_permutation_resolves_equal_sort_keys_like_jax():
    """Equal 32-bit sort keys (about 1 in 150 shuffles of 8,000) must keep JAX's stable order."""
    found = 0
    for seed in range(400):
        key = jax.random.key(seed)
        sub = jax.random.split(key)[1]
        k = np.asarray(jax.random.bits(sub, (8000,), jax.numpy.uint32))
        if len(np.unique(k)) < k.size:
            found += 1
            np.testing.assert_array_equal(np.asarray(data.permutation(key, 8000)),
                                          np.asarray(jax.random.permutation(key, 8000)))
        if found == 2:
            break
    assert found == 2
