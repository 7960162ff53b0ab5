"""The scraper: download an index's URLs the way img2dataset does, and judge each item.

Why asyncio + aiohttp rather than a thread pool: one process keeps hundreds of connections open
on two cores without a thread each, and the per-domain connection cap, rate limit and robots.txt
cache are plain shared state in one event loop (no locks across threads). Decoding, hashing and
resizing are a few microseconds per 28x28 image, so they run in the loop too.

Habits, per item: an identifiable user agent; robots.txt fetched once per domain and honoured;
``X-Robots-Tag: noai`` honoured (opt-out); at most ``per_domain`` connections and one request
start every ``domain_interval_s`` per domain; a timeout per request; retries with exponential
backoff on 5xx, 429 and timeouts; redirects followed by hand (http(s) only, at most
``max_redirects``); a body-size cap read in chunks (memory stays flat); the content type and a
decode checked, with a pixel-count guard against decompression bombs before any pixel is
decoded; the image converted to grey and resized to the dataset's shape.

Statuses (img2dataset's per-shard stats): ``ok``, ``http_error``, ``timeout``, ``robots``,
``opt_out``, ``undecodable``, ``too_large``; then the integrity policy adds ``hash_mismatch``
(exact sha256 pinning) or ``phash_mismatch`` (perceptual hash farther than ``d`` bits).
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import time
import urllib.robotparser
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
import numpy as np
from PIL import Image
from tqdm import tqdm

from .index import hamming, phash
from .params import POLICIES

STATUSES = ("ok", "http_error", "timeout", "robots", "opt_out", "hash_mismatch", "phash_mismatch",
            "undecodable", "too_large")
USER_AGENT = "advgen-scraper/1.0 (research benchmark; offline simulated web; +README 'Scraping')"


@dataclass(frozen=True)
class ScraperConfig:
    concurrency: int = 64
    per_domain: int = 4
    domain_interval_s: float = 0.0
    timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.05
    max_bytes: int = 1_000_000
    max_redirects: int = 3
    max_pixels: int = 4_000_000
    shape: tuple[int, int] = (28, 28)  # (H, W) of the dataset
    user_agent: str = USER_AGENT
    loopback_only: bool = True


@dataclass
class Fetched:
    """One URL's download: ``status`` (one of :data:`STATUSES` before any policy), a detail,
    and for ``ok`` the image (H, W) uint8, the body's sha256 and the image's perceptual hash."""

    status: str
    detail: str = ""
    image: np.ndarray | None = None
    sha256: str | None = None
    phash: str | None = None


class _Retry(Exception):
    pass


class _Domains:
    """Per-domain connection cap, request spacing and robots.txt cache."""

    def __init__(self, cfg: ScraperConfig):
        self.cfg = cfg
        self.slots: dict[str, asyncio.Semaphore] = {}
        self.next_start: dict[str, float] = {}
        self.robots: dict[str, asyncio.Future] = {}

    def slot(self, host: str) -> asyncio.Semaphore:
        return self.slots.setdefault(host, asyncio.Semaphore(self.cfg.per_domain))

    async def pace(self, host: str) -> None:
        if self.cfg.domain_interval_s <= 0:
            return
        now = time.monotonic()
        start = max(now, self.next_start.get(host, now))
        self.next_start[host] = start + self.cfg.domain_interval_s
        await asyncio.sleep(start - now)


def _refused_host(url: str, cfg: ScraperConfig) -> str | None:
    """Why ``url`` may not be fetched (a non-HTTP scheme, a non-loopback address), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} refused (http and https only)"
    try:
        ip = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return None  # a name: the resolver decides (the simulated web's resolver knows only its domains)
    if cfg.loopback_only and not ip.is_loopback:
        return f"address {ip} refused: the scraper only reaches 127.0.0.1"
    return None


async def _robots_allows(session: aiohttp.ClientSession, url: str, cfg: ScraperConfig, domains: _Domains) -> bool:
    parts = urlsplit(url)
    key = f"{parts.scheme}://{parts.netloc}"
    if key not in domains.robots:
        domains.robots[key] = asyncio.ensure_future(_fetch_robots(session, key, cfg))
    parser = await domains.robots[key]
    return parser is None or parser.can_fetch(cfg.user_agent, url)


async def _fetch_robots(session: aiohttp.ClientSession, base: str, cfg: ScraperConfig):
    try:
        async with session.get(base + "/robots.txt", allow_redirects=False) as resp:
            if resp.status != 200:
                return None  # no robots.txt: everything allowed
            text = (await resp.content.read(100_000)).decode("utf-8", "replace")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return None
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(text.splitlines())
    return parser


def decode(body: bytes, cfg: ScraperConfig) -> Fetched:
    """Check and decode an image body: the pixel count before decoding (bomb guard), then grey,
    resized to ``cfg.shape``."""
    try:
        img = Image.open(io.BytesIO(body))
        w, h = img.size
        if w * h > cfg.max_pixels:
            return Fetched("too_large", f"{w}x{h} pixels > max_pixels {cfg.max_pixels} (decompression bomb guard)")
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Fetched("too_large", f"decompression bomb: {exc}")
    except (OSError, ValueError, SyntaxError) as exc:
        return Fetched("undecodable", f"not a decodable image ({exc})")
    grey = img.convert("L")
    if grey.size != (cfg.shape[1], cfg.shape[0]):
        grey = grey.resize((cfg.shape[1], cfg.shape[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(grey, dtype=np.uint8).copy()
    return Fetched("ok", "", arr, hashlib.sha256(body).hexdigest(), f"{phash(arr):016x}")


async def _get(session: aiohttp.ClientSession, url: str, cfg: ScraperConfig) -> Fetched:
    """One attempt at ``url``, following redirects by hand; raises :class:`_Retry` on a
    retryable answer."""
    for _ in range(cfg.max_redirects + 1):
        refused = _refused_host(url, cfg)
        if refused:
            return Fetched("http_error", refused)
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                url = urljoin(url, resp.headers.get("Location", ""))
                continue
            if resp.status == 429 or resp.status >= 500:
                raise _Retry(f"HTTP {resp.status}")
            if resp.status != 200:
                return Fetched("http_error", f"HTTP {resp.status}")
            tag = resp.headers.get("X-Robots-Tag", "").lower()
            if "noai" in tag or "noimageai" in tag:
                return Fetched("opt_out", f"X-Robots-Tag: {tag}")
            ctype = resp.headers.get("Content-Type", "")
            if not ctype.startswith("image/"):
                return Fetched("undecodable", f"content type {ctype!r} is not an image")
            if (resp.content_length or 0) > cfg.max_bytes:
                return Fetched("too_large", f"Content-Length {resp.content_length} > max_bytes {cfg.max_bytes}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                body += chunk
                if len(body) > cfg.max_bytes:
                    return Fetched("too_large", f"body over max_bytes {cfg.max_bytes}")
            return decode(bytes(body), cfg)
    return Fetched("http_error", f"more than {cfg.max_redirects} redirects")


async def fetch(session: aiohttp.ClientSession, url: str, cfg: ScraperConfig, domains: _Domains) -> Fetched:
    """One URL with robots.txt, the per-domain cap and pacing, retries with backoff."""
    refused = _refused_host(url, cfg)
    if refused:
        return Fetched("http_error", refused)
    host = urlsplit(url).hostname or ""
    async with domains.slot(host):
        try:
            if not await _robots_allows(session, url, cfg, domains):
                return Fetched("robots", "disallowed by robots.txt")
        except (aiohttp.ClientError, OSError) as exc:
            return Fetched("http_error", f"{type(exc).__name__}: {exc}")
        last = ""
        for attempt in range(cfg.retries + 1):
            if attempt:
                await asyncio.sleep(cfg.backoff_s * 2 ** (attempt - 1))
            await domains.pace(host)
            try:
                return await _get(session, url, cfg)
            except _Retry as exc:
                last = str(exc)
            except asyncio.TimeoutError:
                last = "timeout"
            except aiohttp.ClientConnectorError as exc:  # DNS failure, refused connection: not retried
                return Fetched("http_error", f"cannot connect: {exc.os_error}")
            except (aiohttp.ClientError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        return Fetched("timeout" if last == "timeout" else "http_error", f"after {cfg.retries + 1} attempts: {last}")


async def _scrape(urls: list[str], resolver, cfg: ScraperConfig, progress: bool) -> list[Fetched]:
    connector = aiohttp.TCPConnector(limit=cfg.concurrency, limit_per_host=cfg.per_domain, resolver=resolver,
                                     ttl_dns_cache=None, use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    domains = _Domains(cfg)
    results: list[Fetched | None] = [None] * len(urls)
    gate = asyncio.Semaphore(cfg.concurrency)
    bar = tqdm(total=len(urls), desc="scrape", disable=not progress, mininterval=2)

    async def one(i: int, url: str) -> None:
        async with gate:
            results[i] = await fetch(session, url, cfg, domains)
        bar.update()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"User-Agent": cfg.user_agent}, auto_decompress=True) as session:
        await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))
    bar.close()
    return results  # type: ignore[return-value]


def scrape(urls: list[str], resolver, cfg: ScraperConfig, progress: bool = False) -> list[Fetched]:
    """Download ``urls`` concurrently; one :class:`Fetched` per URL, in the given order (what is
    written never depends on the order answers arrive in)."""
    return asyncio.run(_scrape(list(urls), resolver, cfg, progress))


def judge(f: Fetched, sha256: str, phash_hex: str, policy: str, max_distance: int) -> str:
    """The item's final status under an integrity ``policy``: ``none`` keeps every downloaded
    image, ``sha256`` only bytes identical to the published ones, ``phash`` images within
    ``max_distance`` bits of the published perceptual hash."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: expected one of {list(POLICIES)}")
    if f.status != "ok" or policy == "none":
        return f.status
    if policy == "sha256":
        return "ok" if f.sha256 == sha256 else "hash_mismatch"
    return "ok" if hamming(int(f.phash, 16), int(phash_hex, 16)) <= max_distance else "phash_mismatch"
