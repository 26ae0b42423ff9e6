"""The ``tfds:<name>`` data source, tested for real with TensorFlow Datasets installed.

Skipped when ``tensorflow_datasets`` is missing (the extra ``[tfds]`` is optional, so the main
suite never needs TensorFlow), unless ``BN_EXP_REQUIRE_TFDS=1``: then the module fails instead,
so the CI step that installs the extra cannot pass by skipping.

No network and no ``tfds.testing.mock_data`` (it aborts the process natively with
``batch_size=-1``, the loader's read path). Instead each dataset is written for real under its
registered name: a subclass of TFDS's own builder (same features, version and file format) whose
splits are a few generated examples, prepared into a temporary data dir. The loader then reads
it through its ordinary path, so shapes, scaling, exact pixels and labels are checked against
what was generated. Python-level sockets fail loudly for the whole module and every attempt is
recorded, so a download attempt fails the test even if TFDS swallowed the error.
"""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest

if os.environ.get("BN_EXP_REQUIRE_TFDS", "") not in ("", "0"):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError("BN_EXP_REQUIRE_TFDS is set but tensorflow_datasets is not installed; "
                          "pip install -e '.[test,tfds]'") from e
else:
    tfds = pytest.importorskip("tensorflow_datasets")

from bn_experiments import cli, data  # noqa: E402
from bn_experiments.data import DataError  # noqa: E402

# name -> (TFDS builder class, image shape); small splits keep the module at a few seconds.
DATASETS = {
    "mnist": (tfds.image_classification.MNIST, (28, 28, 1)),
    "fashion_mnist": (tfds.image_classification.FashionMNIST, (28, 28, 1)),
    "cifar10": (tfds.image_classification.Cifar10, (32, 32, 3)),
}
N_TRAIN, N_TEST = 12, 5
NETWORK_ATTEMPTS: list[str] = []


class NetworkUsed(AssertionError):
    """A test reached for the network."""


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Every Python-level connection or name lookup fails loudly and is recorded."""
    def refuse(what):
        def fail(*args, **kwargs):
            NETWORK_ATTEMPTS.append(f"{what}{args[:2]}")
            raise NetworkUsed(f"network use in a tfds test: {what}{args[:2]}")
        return fail

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse("connect"))
        mp.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
        mp.setattr(socket, "create_connection", refuse("create_connection"))
        mp.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        yield


@pytest.fixture(autouse=True)
def network_untouched():
    """Fails the test (at teardown) if it tried the network, even where TFDS caught the error."""
    start = len(NETWORK_ATTEMPTS)
    yield
    assert not NETWORK_ATTEMPTS[start:], NETWORK_ATTEMPTS[start:]


def _generated(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Distinct random uint8 images; labels 0..6 only, so num_classes=10 must come from TFDS's
    metadata, not from the largest label seen."""
    shape = DATASETS[name][1]
    rng = np.random.default_rng(sorted(DATASETS).index(name))
    out = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        out[split] = (x, (np.arange(n) * 3 % 7).astype(np.int64))
    return out


def _prepare(name: str, data_dir) -> None:
    """Writes `name` as TFDS would (tfrecord, its registered name and version) from `_generated`."""
    base, _ = DATASETS[name]
    splits = _generated(name)

    def examples(split):
        x, y = splits[split]
        for i in range(len(y)):
            ex = {"image": x[i], "label": int(y[i])}
            if name == "cifar10":
                ex["id"] = f"{split}_{i:05d}"
            yield i, ex

    class Tiny(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return {split: examples(split) for split in splits}

    Tiny.name = base.name
    Tiny(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, no_network):
    """A `$BN_EXP_DATA_DIR` whose `tfds/` holds the three tiny datasets."""
    root = tmp_path_factory.mktemp("data")
    for name in DATASETS:
        _prepare(name, root / "tfds")
    assert not NETWORK_ATTEMPTS, NETWORK_ATTEMPTS
    return root


@pytest.fixture
def tfds_dir(data_root, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_root / "tfds"))
    return data_root / "tfds"


def _by_content(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays in the order of the images' bytes (TFDS shuffles examples when writing)."""
    order = sorted(range(len(x)), key=lambda i: x[i].tobytes())
    return x[order], y[order]


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_reads_back_exactly_what_was_written(tfds_dir, name):
    ds = data.load(f"tfds:{name}")
    shape = DATASETS[name][1]
    assert ds.name == f"tfds:{name}" and ds.num_classes == 10 and ds.input_shape == shape
    assert ds.x_train.shape == (N_TRAIN, *shape) and ds.x_test.shape == (N_TEST, *shape)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    for split, (x_gen, y_gen) in _generated(name).items():
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert 0.0 <= x.min() and x.max() <= 1.0
        pixels = np.round(x * 255).astype(np.uint8)
        assert np.array_equal(pixels, x * np.float32(255))  # exact k/255, no resampling
        got_x, got_y = _by_content(pixels, y)
        want_x, want_y = _by_content(x_gen, y_gen)
        np.testing.assert_array_equal(got_x, want_x)  # every pixel
        np.testing.assert_array_equal(got_y, want_y)  # each label with its own image
    again = data.load(f"tfds:{name}")  # same order every time: runs are reproducible
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_default_dir_is_under_bn_exp_data_dir(data_root, monkeypatch):
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setenv("BN_EXP_DATA_DIR", str(data_root))
    ds = data.load("tfds:mnist", standardize=True)
    assert ds.num_train == N_TRAIN and abs(float(ds.x_train.mean())) < 1e-5


@pytest.mark.parametrize("name,close", [("no_such_dataset", None), ("cifr10", "tfds:cifar10")])
def test_unknown_dataset_is_one_line(tfds_dir, name, close):
    with pytest.raises(DataError) as err:
        data.load(f"tfds:{name}")
    msg = _one_line(err)
    assert f"data.source 'tfds:{name}'" in msg and "tfds.list_builders()" in msg
    assert len(msg) < 300, msg  # not TFDS's list of every dataset
    if close:
        assert f"did you mean {close!r}" in msg


@pytest.mark.parametrize("where", ["empty", "other datasets"])
def test_unprepared_dataset_is_one_line_and_downloads_nothing(tmp_path, data_root, monkeypatch, where):
    data_dir = tmp_path / "empty" if where == "empty" else data_root / "tfds"
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    before = sorted(data_dir.rglob("*")) if data_dir.exists() else None
    with pytest.raises(DataError) as err:
        data.load("tfds:cifar100")
    msg = _one_line(err)
    assert msg.startswith("data.source 'tfds:cifar100': not prepared in ")
    assert str(data_dir) in msg and "download_and_prepare()" in msg and "TFDS_DATA_DIR" in msg
    after = sorted(data_dir.rglob("*")) if data_dir.exists() else None
    assert after == before, "the failed load wrote files"


def test_the_advised_prepare_step_gets_as_far_as_the_download(tmp_path):
    """The not-prepared error's advice, `download_and_prepare()`, fails here only for want of a
    network: TFDS 4.9.10 needs `importlib_resources` there without declaring it on Python >= 3.9,
    so the extra lists it; without it this step dies with ModuleNotFoundError."""
    start = len(NETWORK_ATTEMPTS)
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    with pytest.raises(Exception) as err:
        builder.download_and_prepare()
    tried = NETWORK_ATTEMPTS[start:]
    del NETWORK_ATTEMPTS[start:]  # expected here, so not a failure at teardown
    assert not isinstance(err.value, ImportError), err.value
    assert "cs.toronto.edu" in str(tried), (tried, err.value)


@pytest.mark.parametrize("source,fragment", [("tfds:no_such_dataset", "no dataset"),
                                             ("tfds:cifar100", "not prepared")])
def test_cli_exits_2_with_one_line(tfds_dir, tmp_path, monkeypatch, capfd, source, fragment):
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    rc = cli.main(["run", "--workdir", str(tmp_path / "run"), "--config", "fig1_mnist:quick",
                   f"--config.data.source={source}"])
    out, err = capfd.readouterr()
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bn-exp run: error: data.source ") and fragment in lines[0], lines[0]
    assert not (tmp_path / "run").exists()
