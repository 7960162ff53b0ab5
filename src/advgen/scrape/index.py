"""The published URL index (the ``curate`` stage): one row per training image, as web-scale image
datasets (LAION, DataComp) publish them: ``url, label, sha256, phash, width, height, split``.

Images live on K virtual domains (``site00042.test``, a reserved TLD that never resolves outside
this machine). Each domain hosts one class (a site about sandals), its size drawn from a Zipf
law within the class, so that small fractions of the index can be bought as whole domains.
``sha256`` is the digest of the PNG bytes served at publication time; ``phash`` the 64-bit DCT
perceptual hash of the image (Zauner 2010, the imagehash library's ``phash``).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dct

COLUMNS = ("id", "url", "label", "sha256", "phash", "width", "height", "split", "domain")


def png_bytes(image: np.ndarray) -> bytes:
    """The PNG encoding of a uint8 (H, W) or (H, W, 3) image (deterministic: fixed options)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def phash(image: Image.Image | np.ndarray, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """The DCT perceptual hash as a 64-bit int: grey, Lanczos-resized to 32x32, 2-D DCT-II, the
    top-left 8x8 coefficients against their median (imagehash.phash, bit for bit)."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    size = hash_size * highfreq_factor
    pixels = np.asarray(img.convert("L").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    coeffs = dct(dct(pixels, axis=0), axis=1)[:hash_size, :hash_size]  # (8, 8)
    bits = (coeffs > np.median(coeffs)).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Bits in which two 64-bit hashes differ."""
    return (a ^ b).bit_count()


def zipf_sizes(total: int, n: int, exponent: float) -> list[int]:
    """``n`` positive integer sizes summing to ``total``, proportional to 1 / rank^exponent
    (largest remainder; every domain gets at least one image when ``total >= n``)."""
    n = max(1, min(n, total))
    w = 1.0 / np.arange(1, n + 1) ** exponent
    raw = 1 + (total - n) * w / w.sum()
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes))[: total - sizes.sum()]:
        sizes[i] += 1
    return sizes.tolist()


@dataclass
class Index:
    """The index as columns (numpy arrays / lists), in ``id`` order."""

    id: np.ndarray
    url: list[str]
    label: np.ndarray
    sha256: list[str]
    phash: list[str]  # 16 hex digits
    width: np.ndarray
    height: np.ndarray
    split: list[str]
    domain: np.ndarray  # the domain number each url lives on

    def __len__(self) -> int:
        return len(self.id)

    def to_table(self):
        import pyarrow as pa

        return pa.table({c: getattr(self, c) for c in COLUMNS})


def domain_name(d: int) -> str:
    return f"site{d:05d}.test"


def build_index(images: np.ndarray, labels: np.ndarray, n_domains: int, exponent: float, seed: int) -> Index:
    """The index of uint8 ``images`` (N, H, W) with ``labels`` (N,): domains per class in
    proportion to the class's images, Zipf-sized within it, images shuffled onto them (seeded)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    classes = np.unique(labels)
    domain = np.empty(n, dtype=np.int64)
    next_domain = 0
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, round(n_domains * len(members) / n))
        start = 0
        for size in zipf_sizes(len(members), k, exponent):
            domain[members[start:start + size]] = next_domain
            start += size
            next_domain += 1
    pngs = [png_bytes(img) for img in images]
    urls = [f"http://{domain_name(d)}/img/{i:06d}.png" for i, d in enumerate(domain)]
    return Index(id=np.arange(n), url=urls, label=labels.astype(np.int64),
                 sha256=[hashlib.sha256(b).hexdigest() for b in pngs],
                 phash=[f"{phash(img):016x}" for img in images],
                 width=np.full(n, images.shape[2], dtype=np.int64), height=np.full(n, images.shape[1], dtype=np.int64),
                 split=["train"] * n, domain=domain)


def read_index(path) -> Index:
    """Read and check a Parquet index: every column present and typed, no missing value; raises
    ValueError naming the file, the row and the column."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; an index has {list(COLUMNS)}")
    cols = {c: table.column(c).to_pylist() for c in COLUMNS}
    for c, values in cols.items():
        bad = next((i for i, v in enumerate(values) if v is None), None)
        if bad is not None:
            raise ValueError(f"{path}: row {bad}: '{c}' is missing")
    for i, (u, h, p) in enumerate(zip(cols["url"], cols["sha256"], cols["phash"])):
        if not (isinstance(u, str) and u.startswith(("http://", "https://"))):
            raise ValueError(f"{path}: row {i}: 'url' = {u!r} is not an http(s) URL")
        if not (isinstance(h, str) and len(h) == 64 and all(ch in "0123456789abcdef" for ch in h)):
            raise ValueError(f"{path}: row {i}: 'sha256' = {h!r} is not 64 hex digits")
        if not (isinstance(p, str) and len(p) == 16 and all(ch in "0123456789abcdef" for ch in p)):
            raise ValueError(f"{path}: row {i}: 'phash' = {p!r} is not 16 hex digits")
    return Index(id=np.asarray(cols["id"], dtype=np.int64), url=cols["url"],
                 label=np.asarray(cols["label"], dtype=np.int64), sha256=cols["sha256"], phash=cols["phash"],
                 width=np.asarray(cols["width"]), height=np.asarray(cols["height"]), split=cols["split"],
                 domain=np.asarray(cols["domain"], dtype=np.int64))
