"""The official-MNIST source: lookup, checksums, and downloads from a real local HTTP server."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import pathlib
import socket
import threading

import numpy as np
import pytest

from bn_experiments import data, mnist


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def fake():
    """Small MNIST-format files: name -> raw bytes, and their checksums."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": (rng.integers(0, 256, (20, 28, 28)), 2051),
              "train-labels-idx1-ubyte": (rng.integers(0, 10, 20), 2049),
              "t10k-images-idx3-ubyte": (rng.integers(0, 256, (10, 28, 28)), 2051),
              "t10k-labels-idx1-ubyte": (rng.integers(0, 10, 10), 2049)}
    raw = {name: _idx(a, magic) for name, (a, magic) in arrays.items()}
    return raw, {name: hashlib.sha256(b).hexdigest() for name, b in raw.items()}, arrays


@pytest.fixture(scope="module")
def server(fake):
    """127.0.0.1: /missing/ answers 404, /wrong/ serves other bytes, /good/ the right files."""
    raw, _, _ = fake
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            kind, _, file = self.path.strip("/").partition("/")
            name = file.removesuffix(".gz")
            if kind not in ("good", "wrong") or name not in raw:
                self.send_error(404)
                return
            body = gzip.compress(raw[name] if kind == "good" else raw[name][:-1] + b"\x01")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_tries_mirrors_in_order_and_verifies(tmp_path, fake, server):
    raw, sums, arrays = fake
    base, requests = server
    mirrors = [f"http://127.0.0.1:{_closed_port()}/", f"{base}/missing/", f"{base}/wrong/",
               f"{base}/good/"]
    directory = mnist.ensure(tmp_path / "cache", files=sums, mirrors=mirrors, progress=False)
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{n}.gz" for n in raw)
    for name, body in raw.items():
        assert gzip.decompress((directory / f"{name}.gz").read_bytes()) == body
    ds = data.load(f"idx:{directory}")
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"][0])
    # Present and verified: a second call downloads nothing.
    before = len(requests)
    assert mnist.ensure(directory, files=sums, mirrors=mirrors, progress=False) == directory
    assert len(requests) == before


def test_no_mirror_serves_it_is_one_line_naming_the_folder(tmp_path, fake, server):
    _, sums, _ = fake
    base, _ = server
    with pytest.raises(mnist.MnistError) as err:
        mnist.ensure(tmp_path / "cache", files=sums,
                     mirrors=[f"http://127.0.0.1:{_closed_port()}/", f"{base}/wrong/"], progress=False)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "cache") in message
    assert "wrong checksum" in message and "put the four files" in message
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written


def test_a_present_corrupt_file_is_named_and_never_overwritten(tmp_path, fake, server):
    raw, sums, _ = fake
    base, _ = server
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"not mnist")
    with pytest.raises(mnist.MnistError, match="train-labels-idx1-ubyte: not the official file"):
        mnist.ensure(tmp_path, files=sums, mirrors=[f"{base}/good/"], progress=False)
    assert (tmp_path / "train-labels-idx1-ubyte").read_bytes() == b"not mnist"


def test_raw_and_gz_files_both_verify(tmp_path, fake):
    raw, sums, _ = fake
    for i, (name, body) in enumerate(raw.items()):
        if i % 2:
            (tmp_path / name).write_bytes(body)
        else:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(body))
    assert mnist.ensure(tmp_path, files=sums, mirrors=[], progress=False) == tmp_path


def test_data_source_mnist_and_its_directory(tmp_path, fake, server, monkeypatch):
    raw, sums, arrays = fake
    base, _ = server
    monkeypatch.setattr(mnist, "FILES", sums)
    monkeypatch.setattr(mnist, "MIRRORS", (f"{base}/good/",))
    monkeypatch.setenv(mnist.ENV_DIR, str(tmp_path / "data"))
    assert mnist.default_dir() == tmp_path / "data" / "mnist"
    ds = data.load("mnist")
    assert ds.name == "mnist" and ds.x_train.shape == (20, 28, 28, 1) and ds.num_test == 10
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"][0])
    assert data.load(f"mnist:{tmp_path / 'data' / 'mnist'}").num_train == 20
    monkeypatch.setattr(mnist, "MIRRORS", ())
    with pytest.raises(data.DataError, match="put the four files"):
        data.load(f"mnist:{tmp_path / 'empty'}")


def test_default_dir_is_a_per_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(mnist.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert mnist.default_dir() == tmp_path / "bn_experiments" / "mnist"


SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="no copy of the official MNIST beside the repo")
def test_the_real_checksums_match_a_real_copy():
    """The built-in hashes verify the official files (the workspace keeps a copy beside the repo)."""
    assert mnist.ensure(SHARED_MNIST, mirrors=[], progress=False) == SHARED_MNIST
