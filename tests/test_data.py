"""Ingestion: mirrors, checksums, IDX parsing, bad input, provenance."""
from __future__ import annotations

import gzip
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from advgen.data import (DATASETS, DatasetSpec, FetchPolicy, FileSpec, IngestError, fetch_file, ingest,
                         load_split, parse_idx, subset, to_float)
from tests.conftest import FMNIST_LOCAL, idx_bytes, synthetic_mnist, write_gz

NO_WAIT = FetchPolicy(timeout_s=2, retries=2, backoff_s=0.0, max_bytes=10_000_000, sleep=lambda s: None)


def _ingest(spec: DatasetSpec, tmp: Path, out: str = "prepared", **kw) -> tuple[dict, dict]:
    return ingest("mnist", tmp / "raw", tmp / out, NO_WAIT, specs={"mnist": spec}, **kw)


def test_synthetic_mnist_round_trip(tmp_path):
    spec = synthetic_mnist(tmp_path / "mirror", n_train=50, n_test=20)
    manifest, provenance = _ingest(spec, tmp_path)
    x, y = load_split(tmp_path / "prepared", "train")
    assert x.dtype == torch.uint8 and x.shape == (50, 1, 28, 28)
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(50)]
    raw = gzip.decompress((tmp_path / "mirror" / "train-images-idx3-ubyte.gz").read_bytes())
    assert np.array_equal(x.numpy()[:, 0], np.frombuffer(raw, np.uint8, offset=16).reshape(50, 28, 28))
    info = manifest["files"]["train-images-idx3-ubyte.gz"]
    url = provenance["urls"]["train-images-idx3-ubyte.gz"]
    assert url.startswith("file://") and url.endswith("train-images-idx3-ubyte.gz")
    assert "url" not in info and provenance["mirrors"] == list(spec.mirrors)
    assert info["sha256"] == spec.files["train_images"].checksums[0].split(":")[1]
    assert manifest["splits"]["test"]["count"] == 20
    assert manifest["splits"]["train"]["class_histogram"] == {str(k): 5 for k in range(10)}
    on_disk = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert on_disk == manifest


def test_second_mirror_serves_when_first_lacks_the_file(tmp_path):
    spec = synthetic_mnist(tmp_path / "good")
    _, provenance = _ingest(spec, tmp_path, mirrors=[str(tmp_path / "empty"), str(tmp_path / "good")])
    assert all("/good/" in url for url in provenance["urls"].values()) and len(provenance["urls"]) == 4


def test_mirror_fallback_gives_byte_identical_prepared_data(tmp_path):
    """Provenance stays out of data/prepared: the same bytes from a fallback mirror leave every
    prepared file (and so every downstream stage's dependency hash) unchanged."""
    spec = synthetic_mnist(tmp_path / "good")
    (tmp_path / "corrupt").mkdir()
    for f in spec.files.values():  # same names, wrong bytes: every checksum fails
        (tmp_path / "corrupt" / f.name).write_bytes(b"not the file")
    _, direct = _ingest(spec, tmp_path, out="direct", mirrors=[str(tmp_path / "good")])
    _, fallback = _ingest(spec, tmp_path, out="fallback", mirrors=[str(tmp_path / "corrupt"), str(tmp_path / "good")])
    assert direct["mirrors"] != fallback["mirrors"]
    files = sorted(p.name for p in (tmp_path / "direct").iterdir())
    assert files == ["manifest.json", "test.safetensors", "train.safetensors"]
    for name in files:
        assert (tmp_path / "direct" / name).read_bytes() == (tmp_path / "fallback" / name).read_bytes(), name


def test_wrong_checksum_names_file_expected_and_found(tmp_path):
    spec = synthetic_mnist(tmp_path / "mirror")
    bad = FileSpec(spec.files["train_labels"].name, ("sha256:" + "0" * 64,))
    spec = DatasetSpec(**{**spec.__dict__, "files": {**spec.files, "train_labels": bad}})
    with pytest.raises(IngestError) as err:
        _ingest(spec, tmp_path)
    msg = str(err.value)
    assert "train-labels-idx1-ubyte.gz" in msg and "checksum mismatch" in msg
    assert "0" * 64 in msg and "found md5:" in msg
    assert not (tmp_path / "prepared").exists()
    assert not (tmp_path / "raw" / "train-labels-idx1-ubyte.gz").exists()


def test_truncated_gzip(tmp_path):
    spec = synthetic_mnist(tmp_path / "mirror")
    path = tmp_path / "mirror" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:300])
    import hashlib
    pinned = FileSpec(path.name, ("sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),))
    spec = DatasetSpec(**{**spec.__dict__, "files": {**spec.files, "train_images": pinned}})
    with pytest.raises(IngestError, match=r"train-images-idx3-ubyte.gz: truncated or corrupt gzip"):
        _ingest(spec, tmp_path)
    assert not (tmp_path / "prepared").exists()


def test_wrong_magic(tmp_path):
    payload = bytearray(idx_bytes(np.zeros((60, 28, 28), np.uint8)))
    payload[2] = 0x0D  # float32 type code instead of uint8
    spec = synthetic_mnist(tmp_path / "mirror", payloads={"train-images-idx3-ubyte.gz": bytes(payload)})
    with pytest.raises(IngestError) as err:
        _ingest(spec, tmp_path)
    assert "train-images-idx3-ubyte.gz: wrong magic number: expected 0x00000803" in str(err.value)
    assert "found 0x00000d03" in str(err.value)


def test_counts_disagree(tmp_path):
    labels = idx_bytes((np.arange(59) % 10).astype(np.uint8))
    spec = synthetic_mnist(tmp_path / "mirror", payloads={"train-labels-idx1-ubyte.gz": labels})
    with pytest.raises(IngestError, match="60 images but 59 labels"):
        _ingest(spec, tmp_path)


def test_length_and_label_range_checked():
    with pytest.raises(IngestError, match=r"x.idx: expected 28 bytes for dims \[2, 2, 3\], found 27"):
        parse_idx(idx_bytes(np.zeros((2, 2, 3), np.uint8))[:-1], "x.idx", 3)
    with pytest.raises(IngestError, match="wrong magic"):
        parse_idx(idx_bytes(np.zeros((2, 2), np.uint8)), "x.idx", 3)


def test_every_mirror_failing_lists_each_reason(tmp_path):
    spec = synthetic_mnist(tmp_path / "mirror")
    wrong = tmp_path / "wrong"
    write_gz(wrong / "train-images-idx3-ubyte.gz", b"not the right file")
    mirrors = [str(tmp_path / "nowhere"), str(wrong), "ftp://example.invalid/data"]
    with pytest.raises(IngestError) as err:
        _ingest(spec, tmp_path, mirrors=mirrors)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz: every mirror failed" in msg
    assert "nowhere/train-images-idx3-ubyte.gz: no such file" in msg
    assert "wrong/train-images-idx3-ubyte.gz: checksum mismatch" in msg
    assert "unsupported URL scheme 'ftp'" in msg


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Serves files from ``root``; fails the first ``fail`` GETs of each path with 503."""

    root: Path
    fail = 1
    seen: dict

    def do_GET(self):  # noqa: N802
        count = self.seen.get(self.path, 0)
        self.seen[self.path] = count + 1
        target = self.root / self.path.lstrip("/")
        if count < self.fail or not target.is_file():
            self.send_error(503 if target.is_file() else 404)
            return
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirror(tmp_path):
    handler = type("H", (_Flaky,), {"root": tmp_path / "mirror", "seen": {}, "fail": 1})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def test_http_mirror_with_retry_and_backoff(tmp_path, http_mirror):
    url, handler = http_mirror
    spec = synthetic_mnist(tmp_path / "mirror")
    waits: list[float] = []
    policy = FetchPolicy(timeout_s=5, retries=3, backoff_s=0.5, max_bytes=10_000_000, sleep=waits.append)
    _, provenance = ingest("mnist", tmp_path / "raw", tmp_path / "prepared", policy, specs={"mnist": spec}, mirrors=[url])
    assert all(u.startswith(url) for u in provenance["urls"].values())
    assert all(n == 2 for n in handler.seen.values())  # one 503, then success
    assert waits == [0.5] * 4  # first backoff of each of the four files


def test_http_size_cap_and_exhausted_retries(tmp_path, http_mirror):
    url, handler = http_mirror
    spec = synthetic_mnist(tmp_path / "mirror")
    handler.fail = 99
    with pytest.raises(IngestError, match=r"HTTPError.*503.*after 2 attempt"):
        fetch_file(spec.files["train_labels"], [url], tmp_path / "raw" / "x.gz", NO_WAIT)
    handler.fail = 0
    tiny = FetchPolicy(timeout_s=5, retries=1, max_bytes=100, sleep=lambda s: None)
    with pytest.raises(IngestError, match="larger than the limit of 100 bytes"):
        fetch_file(spec.files["train_images"], [url], tmp_path / "raw" / "y.gz", tiny)
    assert list((tmp_path / "raw").iterdir()) == []  # no partial files left behind


def test_failed_ingest_keeps_previous_output(tmp_path):
    spec = synthetic_mnist(tmp_path / "mirror")
    _ingest(spec, tmp_path)
    before = (tmp_path / "prepared" / "train.safetensors").read_bytes()
    (tmp_path / "mirror" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(IngestError):
        _ingest(spec, tmp_path)
    assert (tmp_path / "prepared" / "train.safetensors").read_bytes() == before


def test_cifar_binary_archive(tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, n in [("data_batch_1.bin", 6), ("data_batch_2.bin", 4), ("test_batch.bin", 5)]:
            rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1).astype(np.uint8)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = rec.size
            tar.addfile(info, io.BytesIO(rec.tobytes()))
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "cifar-10-binary.tar.gz").write_bytes(buf.getvalue())
    import hashlib
    spec = DatasetSpec(**{**DATASETS["cifar10"].__dict__, "mirrors": (str(tmp_path / "mirror"),),
                          "files": {"archive": FileSpec("cifar-10-binary.tar.gz",
                                                        ("sha256:" + hashlib.sha256(buf.getvalue()).hexdigest(),))}})
    manifest, _ = ingest("cifar10", tmp_path / "raw", tmp_path / "prepared", NO_WAIT, specs={"cifar10": spec})
    x, y = load_split(tmp_path / "prepared", "train")
    assert x.shape == (10, 3, 32, 32) and manifest["splits"]["test"]["count"] == 5


def test_digits_needs_no_files(tmp_path):
    manifest, _ = ingest("digits", tmp_path / "raw", tmp_path / "prepared", NO_WAIT)
    x, y = load_split(tmp_path / "prepared", "train")
    assert x.shape[1:] == (1, 8, 8) and int(x.max()) == 255
    assert manifest["splits"]["train"]["count"] + manifest["splits"]["test"]["count"] == 1797
    assert manifest["files"] == {}


def test_unknown_dataset(tmp_path):
    with pytest.raises(IngestError, match="unknown dataset 'imagenet'"):
        ingest("imagenet", tmp_path, tmp_path / "p", NO_WAIT)


@pytest.mark.skipif(not FMNIST_LOCAL.is_dir(), reason="needs the Debian package dataset-fashion-mnist")
def test_fashion_mnist_local_mirror_checksums(tmp_path):
    spec = DATASETS["fashion-mnist"]
    for fspec in spec.files.values():
        url, dig = fetch_file(fspec, spec.mirrors[:1], tmp_path / fspec.name, FetchPolicy())
        assert url.startswith("file:///usr/share/datasets/fashion-mnist/")


def test_subset_and_to_float():
    x = torch.arange(10 * 16, dtype=torch.uint8).reshape(10, 1, 4, 4)
    y = torch.arange(10)
    xs, ys = subset(x, y, 4, torch.Generator().manual_seed(0))
    xs2, ys2 = subset(x, y, 4, torch.Generator().manual_seed(0))
    assert ys.tolist() == ys2.tolist() and len(ys) == 4 and torch.equal(xs, x[ys])
    assert subset(x, y, 0, torch.Generator())[1] is y
    f = to_float(x, resolution=2)
    assert f.shape == (10, 1, 2, 2) and float(f.max()) <= 1.0


def test_label_out_of_range(tmp_path):
    labels = idx_bytes(np.full(60, 12, np.uint8))
    spec = synthetic_mnist(tmp_path / "mirror", payloads={"train-labels-idx1-ubyte.gz": labels})
    with pytest.raises(IngestError, match=r"train-labels-idx1-ubyte.gz: expected labels in \[0, 10\), found 12"):
        _ingest(spec, tmp_path)
