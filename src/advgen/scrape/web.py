"""A simulated web, served on 127.0.0.1 by the pipeline itself: the index's domains as they are at
download time, seeded from params.

Each domain is in one state: ``alive``; ``expired`` (its name no longer resolves, or it answers
404); ``slow`` (answers after a delay); ``flaky`` (503 on the first request for a URL, then 200);
``robots`` (its robots.txt disallows the image path); ``opt_out`` (serves with ``X-Robots-Tag:
noai``); ``bought`` (an expired domain the attacker bought: every URL serves a BadNets-triggered
image of the source class, while the index still says the target class: split-view poisoning,
Carlini et al. 2023). A fraction of the other items drifted benignly since publication
(re-encoded as JPEG, or shifted by one pixel): their sha256 no longer matches, their perceptual
hash may.

:class:`SimulatedWeb` runs an aiohttp server in a thread, bound to 127.0.0.1 only;
:class:`LoopbackResolver` maps the virtual domains to it for the scraper's client, so the scraper
sees ordinary URLs, and refuses every other name.
"""
from __future__ import annotations

import asyncio
import io
import socket
import threading
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np
from aiohttp import web
from aiohttp.abc import AbstractResolver
from PIL import Image

from .index import Index, domain_name, png_bytes

STATES = ("alive", "expired_404", "expired_dns", "slow", "flaky", "robots", "opt_out")


@dataclass(frozen=True)
class WebSpec:
    """The web at download time (probabilities per domain, drift per item, the attacker)."""

    seed: int
    p_expired: float  # half of them 404, half no longer resolve
    p_slow: float
    p_flaky: float
    p_robots: float
    p_opt_out: float
    p_drift: float
    slow_ms: float
    purchase: float  # fraction of the index's images the attacker bought, as whole target-class domains
    target: int
    source: int
    trigger_size: int = 3


@dataclass
class WebPlan:
    """What every domain and item serves: per-domain state, bought domains, per-item drift and
    the attacker's image for each bought item."""

    state: dict[int, str]  # domain -> one of STATES, or "bought"
    drift: np.ndarray  # (N,) 0 none, 1 re-encoded (JPEG), 2 shifted by one pixel
    poison_source: dict[int, int]  # item id on a bought domain -> the training image it serves (triggered)
    bought_items: np.ndarray  # (n_bought,) item ids

    @property
    def dns_failures(self) -> set[str]:
        return {domain_name(d) for d, s in self.state.items() if s == "expired_dns"}


def plan_web(index: Index, spec: WebSpec, labels_of_images: np.ndarray) -> WebPlan:
    """The seeded state of the web at download time. The attacker buys target-class domains
    (seeded order) while their images fit the purchase quota; ``labels_of_images`` are the true
    labels of the training images, from which the source-class images are drawn."""
    rng = np.random.default_rng(spec.seed)
    domains = np.unique(index.domain)
    probs = np.array([spec.p_expired / 2, spec.p_expired / 2, spec.p_slow, spec.p_flaky, spec.p_robots, spec.p_opt_out])
    draws = rng.choice(len(STATES), size=len(domains), p=[1 - probs.sum(), *probs])
    state = {int(d): STATES[k] for d, k in zip(domains, draws)}
    sizes = np.bincount(index.domain, minlength=int(domains.max()) + 1)
    quota = int(round(spec.purchase * len(index)))
    target_domains = np.unique(index.domain[index.label == spec.target])
    bought, total = [], 0
    for d in rng.permutation(target_domains):
        if total + sizes[d] <= quota:
            bought.append(int(d))
            total += int(sizes[d])
    for d in bought:
        state[d] = "bought"
    bought_items = np.flatnonzero(np.isin(index.domain, bought))
    sources = rng.permutation(np.flatnonzero(labels_of_images == spec.source))
    poison_source = {int(i): int(sources[k % len(sources)]) for k, i in enumerate(bought_items)}
    live = np.array([state[int(d)] not in ("bought", "expired_404", "expired_dns") for d in index.domain])
    drifted = (rng.random(len(index)) < spec.p_drift) & live
    kinds = rng.integers(1, 3, size=len(index))
    return WebPlan(state, np.where(drifted, kinds, 0), poison_source, bought_items)


def drifted(image: np.ndarray, kind: int) -> bytes:
    """The bytes a benignly changed item serves: 1 = re-encoded as JPEG (quality 90), 2 = shifted
    down by one pixel (the top row repeated), both PNG on the wire except the JPEG."""
    if kind == 1:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        return buf.getvalue()
    shifted = np.concatenate([image[:1], image[:-1]], axis=0)
    return png_bytes(shifted)


def triggered(image: np.ndarray, size: int) -> np.ndarray:
    """A BadNets trigger (checkerboard, bottom-right corner one pixel from the edge) on a uint8
    (H, W) image: the same trigger the backdoors area pastes (:mod:`advgen.backdoors.poison`)."""
    import torch

    from ..backdoors.poison import PatchTrigger, checkerboard

    x = torch.from_numpy(image)[None, None]  # (1, 1, H, W)
    out, _, _ = PatchTrigger(checkerboard(size, 1), "corner").apply(x, torch.Generator())
    return out[0, 0].numpy()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class SimulatedWeb:
    """The index's domains served on 127.0.0.1 (a free port) from a background thread.

    ``images`` (N, H, W) are what the index published; ``latency_ms`` delays every answer (the
    throughput benchmark's realistic network); ``extra`` maps a path of the domain ``edge.test``
    to a handler (the bad-input tests: a stall, a huge body, a bomb, redirects)."""

    index: Index
    images: np.ndarray
    plan: WebPlan
    spec: WebSpec
    latency_ms: float = 0.0
    extra: dict[str, Handler] = field(default_factory=dict)
    port: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        self._flaky_seen: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._host_domain = {domain_name(int(d)): int(d) for d in np.unique(self.index.domain)}

    # ------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "SimulatedWeb":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # loopback only, never 0.0.0.0
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def resolver(self) -> "LoopbackResolver":
        return LoopbackResolver(self.port, set(self._host_domain) | {"edge.test"}, self.plan.dns_failures)

    # ------------------------------------------------------------------------------ serving
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        host = (request.host or "").split(":")[0]
        if host == "edge.test" and request.path in self.extra:
            return await self.extra[request.path](request)
        domain = self._host_domain.get(host)
        if domain is None:
            return web.Response(status=404)
        state = self.plan.state[domain]
        if request.path == "/robots.txt":
            rules = "Disallow: /img/" if state == "robots" else "Allow: /"
            return web.Response(text=f"User-agent: *\n{rules}\n", content_type="text/plain")
        if state == "expired_404" or not request.path.startswith("/img/"):
            return web.Response(status=404)
        try:
            item = int(request.path.removeprefix("/img/").removesuffix(".png"))
        except ValueError:
            return web.Response(status=404)
        if not 0 <= item < len(self.index) or self.index.domain[item] != domain:
            return web.Response(status=404)
        if state == "slow":
            await asyncio.sleep(self.spec.slow_ms / 1000)
        if state == "flaky" and request.path not in self._flaky_seen:
            self._flaky_seen.add(request.path)
            return web.Response(status=503, headers={"Retry-After": "0"})
        body, ctype = self.content(item)
        headers = {"X-Robots-Tag": "noai"} if state == "opt_out" else {}
        return web.Response(body=body, content_type=ctype, headers=headers)

    def content(self, item: int) -> tuple[bytes, str]:
        """The bytes and content type URL ``item`` serves at download time."""
        if item in self.plan.poison_source:
            return png_bytes(triggered(self.images[self.plan.poison_source[item]], self.spec.trigger_size)), "image/png"
        kind = int(self.plan.drift[item])
        if kind == 1:
            return drifted(self.images[item], 1), "image/jpeg"
        return (drifted(self.images[item], 2) if kind == 2 else png_bytes(self.images[item])), "image/png"


class LoopbackResolver(AbstractResolver):
    """Resolves the simulated domains to 127.0.0.1:``port``; a domain whose name expired fails as
    DNS would; any other name is refused, so a scrape against the simulated web never leaves
    this machine."""

    def __init__(self, port: int, hosts: set[str], dns_failures: set[str]):
        self.port, self.hosts, self.dns_failures = port, hosts, dns_failures

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        if host in self.dns_failures:
            raise OSError(f"{host}: name does not resolve (expired domain)")
        if host not in self.hosts:
            raise OSError(f"{host}: not a simulated domain; the scraper only reaches 127.0.0.1")
        return [{"hostname": host, "host": "127.0.0.1", "port": self.port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None
