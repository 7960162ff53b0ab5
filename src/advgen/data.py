"""Dataset ingestion ("scraping"): mirrors, checksums, IDX parsing, provenance.

A dataset is a set of files, each pinned by checksums, fetched from an ordered list of
mirrors (local folders first, then the official URLs). Every file is streamed to a temp
file with a timeout, retries with backoff and a size cap, verified, then renamed into
place. Parsed arrays are written as uint8 safetensors with a ``manifest.json`` that
records which URL served each file, its sha256, size and counts.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .utils import atomic_dir, dumps


class IngestError(RuntimeError):
    """A dataset file could not be fetched, verified or parsed."""


@dataclass(frozen=True)
class FileSpec:
    """One published file: its name and every checksum accepted for it.

    ``checksums`` holds ``"md5:<hex>"`` or ``"sha256:<hex>"`` strings; a file passes
    when it matches any of them (official releases and repacked mirrors differ in their
    gzip headers, not in content).
    """

    name: str
    checksums: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files, mirrors, format and classes."""

    name: str
    files: dict[str, FileSpec]  # role -> file; roles: train_images, train_labels, ...
    mirrors: tuple[str, ...]
    fmt: str  # "idx" or "cifar-bin"
    classes: tuple[str, ...]
    shape: tuple[int, int, int]  # (C, H, W)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")

# Official md5s are those published by the dataset authors (and used by torchvision);
# the sha256s are of Debian's dataset-fashion-mnist package, which recompressed the files.
DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files={
            "train_images": FileSpec("train-images-idx3-ubyte.gz", (
                "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "sha256:b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7")),
            "train_labels": FileSpec("train-labels-idx1-ubyte.gz", (
                "md5:25c81989df183df01b3e8a0aad5dffbe",
                "sha256:0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056")),
            "test_images": FileSpec("t10k-images-idx3-ubyte.gz", (
                "md5:bef4ecab320f06d8554ea6380940ec79",
                "sha256:cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa")),
            "test_labels": FileSpec("t10k-labels-idx1-ubyte.gz", (
                "md5:bb300cfdad3c16e7a12a480ee83cd310",
                "sha256:8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")),
        },
        mirrors=(
            "file:///usr/share/datasets/fashion-mnist",
            "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
        ),
        fmt="idx",
        classes=FASHION_CLASSES,
        shape=(1, 28, 28),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        files={
            "train_images": FileSpec("train-images-idx3-ubyte.gz", ("md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",)),
            "train_labels": FileSpec("train-labels-idx1-ubyte.gz", ("md5:d53e105ee54ea40749a09fcbcd1e9432",)),
            "test_images": FileSpec("t10k-images-idx3-ubyte.gz", ("md5:9fb629c4189551a2d022fa330f9573f3",)),
            "test_labels": FileSpec("t10k-labels-idx1-ubyte.gz", ("md5:ec29112dd5afa0611ce80d1b7f02629c",)),
        },
        mirrors=(
            "file:///usr/share/datasets/mnist",
            "https://ossci-datasets.s3.amazonaws.com/mnist",
            "http://yann.lecun.com/exdb/mnist",
        ),
        fmt="idx",
        classes=DIGIT_CLASSES,
        shape=(1, 28, 28),
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        files={"archive": FileSpec("cifar-10-binary.tar.gz", ("md5:c32a1d4ab5d03f1284b67883e8d87530",))},
        mirrors=("file:///usr/share/datasets/cifar10", "https://www.cs.toronto.edu/~kriz"),
        fmt="cifar-bin",
        classes=CIFAR_CLASSES,
        shape=(3, 32, 32),
    ),
}


# ----------------------------------------------------------------------------- fetching
@dataclass
class FetchPolicy:
    """How hard to try each mirror."""

    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    max_bytes: int = 200_000_000
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


class _Permanent(Exception):
    """A failure that retrying the same mirror cannot fix."""


def _digests(path: Path) -> dict[str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _open_url(url: str, timeout: float):
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        local = Path(urllib.request.url2pathname(parsed.path))
        if not local.is_file():
            raise _Permanent(f"no such file {local}")
        return local.open("rb")
    if parsed.scheme in ("http", "https"):
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (scheme checked)
    raise _Permanent(f"unsupported URL scheme {parsed.scheme!r}")


def _stream(url: str, dest: Path, policy: FetchPolicy) -> None:
    size = 0
    with _open_url(url, policy.timeout_s) as src, dest.open("wb") as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            size += len(chunk)
            if size > policy.max_bytes:
                raise _Permanent(f"larger than the limit of {policy.max_bytes} bytes")
            out.write(chunk)


def mirror_url(mirror: str, filename: str) -> str:
    """Join a mirror (URL or plain folder) and a file name."""
    if "://" not in mirror:
        mirror = Path(mirror).absolute().as_uri()
    return mirror.rstrip("/") + "/" + filename


def fetch_file(spec: FileSpec, mirrors: tuple[str, ...] | list[str], dest: Path,
               policy: FetchPolicy) -> tuple[str, dict[str, str]]:
    """Fetch ``spec`` from the first mirror that serves a verified copy.

    Returns the URL that served it and its digests. On failure raises IngestError
    listing every mirror's reason. ``dest`` is only ever written by a rename.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = []
    for mirror in mirrors:
        url = mirror_url(mirror, spec.name)
        reason = _try_mirror(url, spec, dest, policy)
        if reason is None:
            return url, _digests(dest)
        reasons.append(f"  - {url}: {reason}")
    raise IngestError(f"{spec.name}: every mirror failed:\n" + "\n".join(reasons))


def _try_mirror(url: str, spec: FileSpec, dest: Path, policy: FetchPolicy) -> str | None:
    """Return None on success, else the reason this mirror failed."""
    reason = "not tried"
    for attempt in range(max(1, policy.retries)):
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{spec.name}.", suffix=".part")
        os.close(fd)
        tmp = Path(name)
        try:
            _stream(url, tmp, policy)
            got = _digests(tmp)
            if not any(got[c.split(":", 1)[0]] == c.split(":", 1)[1] for c in spec.checksums):
                return (f"checksum mismatch: expected one of {list(spec.checksums)}, "
                        f"found md5:{got['md5']} sha256:{got['sha256']}")
            os.replace(tmp, dest)
            return None
        except _Permanent as exc:
            return str(exc)
        except OSError as exc:  # network errors, timeouts (urllib raises OSError subclasses)
            reason = f"{type(exc).__name__}: {exc} (after {attempt + 1} attempt(s))"
            if attempt + 1 < policy.retries:
                policy.sleep(policy.backoff_s * 2**attempt)
        finally:
            tmp.unlink(missing_ok=True)
    return reason


# ----------------------------------------------------------------------------- parsing
def gunzip(path: Path) -> bytes:
    """Decompress a gzip file whole, naming the file if it is truncated or corrupt."""
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IngestError(f"{path.name}: truncated or corrupt gzip ({exc})") from None


def parse_idx(raw: bytes, name: str, ndim: int) -> np.ndarray:
    """Parse an IDX file holding uint8 data with ``ndim`` dimensions.

    Checks the magic number (0x0000 08 ndim), the dims and the exact length.
    """
    if len(raw) < 4:
        raise IngestError(f"{name}: expected an IDX header of 4 bytes, found {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    expected = 0x0800 | ndim
    if magic != expected:
        raise IngestError(
            f"{name}: wrong magic number: expected 0x{expected:08x} (uint8, {ndim} dims), "
            f"found 0x{magic:08x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IngestError(f"{name}: header needs {header} bytes, file has {len(raw)}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if any(d == 0 for d in dims):
        raise IngestError(f"{name}: expected non-zero dims, found {dims}")
    want = header + int(np.prod(dims))
    if len(raw) != want:
        raise IngestError(
            f"{name}: expected {want} bytes for dims {dims}, found {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_pair(images: np.ndarray, labels: np.ndarray, split: str, names: tuple[str, str],
                num_classes: int) -> None:
    if len(images) != len(labels):
        raise IngestError(
            f"{names[0]} / {names[1]}: {split} images and labels disagree: "
            f"{len(images)} images but {len(labels)} labels")
    if len(labels) and int(labels.max()) >= num_classes:
        raise IngestError(
            f"{names[1]}: expected labels in [0, {num_classes}), found {int(labels.max())}")


def parse_cifar_bin(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse CIFAR-10's binary tarball: records of 1 label byte + 3072 pixel bytes.

    Reads the raw bytes with tarfile; nothing is unpickled.
    """
    record = 1 + 3 * 32 * 32
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                base = Path(member.name).name
                split = "test" if base == "test_batch.bin" else "train" if base.startswith("data_batch_") else None
                if split is None or not member.isfile():
                    continue
                raw = tar.extractfile(member).read()
                if len(raw) == 0 or len(raw) % record:
                    raise IngestError(
                        f"{path.name}:{member.name}: expected a multiple of {record} bytes, found {len(raw)}")
                parts[split].append(np.frombuffer(raw, np.uint8).reshape(-1, record))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise IngestError(f"{path.name}: truncated or corrupt archive ({exc})") from None
    out = {}
    for split, chunks in parts.items():
        if not chunks:
            raise IngestError(f"{path.name}: no {split} batches found in the archive")
        arr = np.concatenate(chunks)
        out[split] = (arr[:, 1:].reshape(-1, 3, 32, 32), arr[:, 0].copy())
    return out


def parse_dataset(spec: DatasetSpec, paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{"train": (images, labels), "test": (...)}``, images (N, C, H, W) uint8."""
    if spec.fmt == "cifar-bin":
        splits = parse_cifar_bin(paths["archive"])
    else:
        splits = {}
        for split in ("train", "test"):
            img_path, lab_path = paths[f"{split}_images"], paths[f"{split}_labels"]
            images = parse_idx(gunzip(img_path), img_path.name, 3)
            labels = parse_idx(gunzip(lab_path), lab_path.name, 1)
            _check_pair(images, labels, split, (img_path.name, lab_path.name), len(spec.classes))
            splits[split] = (images[:, None], labels)
    for split, (images, labels) in splits.items():
        _check_pair(images, labels, split, (spec.name, spec.name), len(spec.classes))
        if tuple(images.shape[1:]) != spec.shape:
            raise IngestError(f"{spec.name}: expected {split} images of shape {spec.shape}, "
                              f"found {tuple(images.shape[1:])}")
    return splits


def load_digits_splits(test_fraction: float = 0.2, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's embedded 8x8 digits, scaled 0..16 -> 0..255, split stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.uint8)
    xtr, xte, ytr, yte = train_test_split(images, labels, test_size=test_fraction,
                                          random_state=seed, stratify=labels)
    return {"train": (xtr, ytr), "test": (xte, yte)}


# ----------------------------------------------------------------------------- the stage
def _histogram(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels.astype(np.int64), minlength=len(classes))
    return {name: int(c) for name, c in zip(classes, counts)}


def _array_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def ingest(dataset: str, raw_dir: Path, out_dir: Path, policy: FetchPolicy,
           mirrors: list[str] | None = None, specs: dict[str, DatasetSpec] | None = None) -> dict:
    """Fetch, verify and parse ``dataset``; write ``out_dir`` atomically; return
    ``(manifest, provenance)``.

    ``out_dir`` receives ``train.safetensors``, ``test.safetensors`` (uint8 ``images``
    (N, C, H, W) and int64 ``labels`` (N,)) and ``manifest.json``. The manifest describes the
    content only (file digests and sizes, class names, array digests, histograms), so the same
    bytes from another mirror give a byte-identical ``out_dir`` and no downstream stage reruns.
    Where the files came from (the URL each was fetched from, the mirror list, the library
    version) is the ``provenance``, which the caller writes elsewhere. ``mirrors`` overrides
    the registry's list (the local path stays the caller's choice). ``specs`` lets tests
    register synthetic datasets.
    """
    specs = DATASETS if specs is None else specs
    files_info: dict[str, dict] = {}
    if dataset == "digits":
        import sklearn

        splits = load_digits_splits()
        classes = DIGIT_CLASSES
        provenance = {"source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})"}
    else:
        if dataset not in specs:
            raise IngestError(f"unknown dataset {dataset!r}; expected one of {sorted(specs) + ['digits']}")
        spec = specs[dataset]
        chosen = tuple(mirrors) if mirrors else spec.mirrors
        paths, urls = {}, {}
        for role, fspec in spec.files.items():
            dest = raw_dir / fspec.name
            url, dig = fetch_file(fspec, chosen, dest, policy)
            paths[role] = dest
            files_info[fspec.name] = {"role": role, "bytes": dest.stat().st_size, **dig}
            urls[fspec.name] = url
        splits = parse_dataset(spec, paths)
        classes = spec.classes
        provenance = {"mirrors": list(chosen), "urls": urls}
    manifest = {"dataset": dataset, "classes": list(classes), "files": files_info, "splits": {}}
    with atomic_dir(out_dir) as tmp:
        manifest["splits"] = write_splits(tmp, splits, classes)
        (tmp / "manifest.json").write_text(dumps(manifest))
    return manifest, {"dataset": dataset, **provenance}


def write_splits(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                 classes: tuple[str, ...] | list[str]) -> dict[str, dict]:
    """Write ``<split>.safetensors`` (uint8 ``images`` (N, C, H, W), int64 ``labels`` (N,)) for
    each split into ``folder``; return the manifest's ``splits`` entry (counts, digests, histograms).
    The poison stage writes its datasets with this too, so they load like ingested ones."""
    out = {}
    for split, (images, labels) in splits.items():
        save_file({"images": torch.from_numpy(np.array(images, copy=True)),
                   "labels": torch.from_numpy(labels.astype(np.int64))},
                  str(folder / f"{split}.safetensors"))
        out[split] = {
            "count": int(len(labels)),
            "shape": list(images.shape[1:]),
            "images_sha256": _array_sha256(images),
            "labels_sha256": _array_sha256(labels.astype(np.int64)),
            "class_histogram": _histogram(labels, classes),
        }
    return out


# ----------------------------------------------------------------------------- consumers
def load_split(prepared: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``(images uint8 (N, C, H, W), labels int64 (N,))`` written by :func:`ingest`."""
    path = Path(prepared) / f"{split}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the ingest stage first (dvc repro ingest)")
    tensors = load_file(str(path))
    if set(tensors) != {"images", "labels"}:
        raise IngestError(f"{path}: expected tensors 'images' and 'labels', found {sorted(tensors)}")
    return tensors["images"], tensors["labels"]


def load_classes(prepared: str | Path) -> list[str]:
    """Class names recorded in the manifest."""
    return json.loads((Path(prepared) / "manifest.json").read_text())["classes"]


def manifest_sha256(prepared: str | Path) -> str:
    """sha256 of the manifest file, recorded by consumers as data provenance."""
    return hashlib.sha256((Path(prepared) / "manifest.json").read_bytes()).hexdigest()


def subset_index(total: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted positions of a seeded random subset of size ``n`` out of ``total`` (0 or >= total:
    all of them, drawing nothing from ``generator``)."""
    if n <= 0 or n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=generator)[:n].sort().values


def subset(images: torch.Tensor, labels: torch.Tensor, n: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of size ``n`` (0 or >= N keeps everything, in order)."""
    if n <= 0 or n >= len(labels):
        return images, labels
    idx = subset_index(len(labels), n, generator)
    return images[idx], labels[idx]


def dataset_dir(dataset: str, data: str = "prepared") -> Path:
    """The folder of a model's training data: ``data/prepared/<dataset>`` for ``"prepared"``,
    ``data/poisoned/<name>`` for ``"poisoned/<name>"`` (the poison stage writes the same format)."""
    return Path("data/prepared") / dataset if data == "prepared" else Path("data") / data


def to_float(images: torch.Tensor, resolution: int | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1], optionally area-resized to ``resolution``."""
    x = images.float().div_(255.0)
    if resolution and resolution != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="area")
    return x
