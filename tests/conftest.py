"""Shared fixtures: synthetic IDX datasets written by the tests themselves."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from advgen.data import DatasetSpec, FileSpec, load_digits_splits

ROOT = Path(__file__).resolve().parents[1]
FMNIST_LOCAL = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000 08 ndim, big-endian dims)."""
    header = (0x0800 | arr.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> str:
    """Write gzip (fixed mtime, so bytes are reproducible) and return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(payload)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synthetic_mnist(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0,
                    payloads: dict[str, bytes] | None = None) -> DatasetSpec:
    """Write MNIST-layout IDX files into ``folder`` and return a spec pinning their sha256."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    roles = ["train_images", "train_labels", "test_images", "test_labels"]
    files = {}
    for role, (name, arr) in zip(roles, arrays.items()):
        payload = (payloads or {}).get(name, idx_bytes(arr))
        files[role] = FileSpec(name, (f"sha256:{write_gz(folder / name, payload)}",))
    return DatasetSpec(name="mnist", files=files, mirrors=(str(folder),), fmt="idx",
                       classes=tuple(str(i) for i in range(10)), shape=(1, 28, 28))


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return tmp_path / "mirror"


@pytest.fixture(scope="session")
def digits_cnn():
    """A small CNN trained on scikit-learn's 8x8 digits (frozen, eval mode), 200 test images it
    mostly gets right, and the training set: (model, x (200, 1, 8, 8), y (200,), (x_train, y_train))."""
    from advgen.models import build_model
    from advgen.training import fit

    s = load_digits_splits()
    x = torch.from_numpy(s["train"][0]).float() / 255
    y = torch.from_numpy(s["train"][1]).long()
    xt = torch.from_numpy(s["test"][0]).float() / 255
    yt = torch.from_numpy(s["test"][1]).long()
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0), width=16, dropout=0.0)
    fit(model, (x, y), (xt, yt), epochs=8, batch_size=64, lr=3e-3, weight_decay=0.0, num_classes=10,
        generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, xt[:200], yt[:200], (x, y)


def params_error(params: dict, edit) -> str:
    """The ConfigError message validate_params raises on a deep copy of ``params`` after ``edit(copy)``."""
    import copy

    import pytest

    from advgen.config import ConfigError
    from advgen.areas import validate_params

    params = copy.deepcopy(params)
    edit(params)
    with pytest.raises(ConfigError) as err:
        validate_params(params)
    return str(err.value)
