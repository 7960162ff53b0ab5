"""Scraper throughput against the loopback simulated web with realistic latency.

Prints images/s of advgen's scraper (asyncio + aiohttp) at 1, 4, 16 and 64 concurrent
connections against a web that answers every request after ``--latency-ms`` (35 ms: a typical
round trip to an image host), and of img2dataset (PyPI) on the same index and server when an
interpreter with it is given (``--img2dataset-python``). img2dataset is not installed in the
project's venv: its pins would downgrade pandas 3.1.1 to 2.3.3 and add wandb and opencv, so it
runs from a venv of its own:

    python3 -m venv /tmp/i2d-venv && /tmp/i2d-venv/bin/pip install img2dataset==1.47.0
    python benchmarks/bench_scrape.py --img2dataset-python /tmp/i2d-venv/bin/python

Both fetch ``http://127.0.0.1:PORT/img/<id>.png`` (img2dataset resolves names itself, so it
cannot use the simulated domains) from the same server, which runs in a process of its own as a
real server would (in a thread it would share the scraper's interpreter lock); our scraper then
has one host, so its per-domain cap is set to the concurrency. img2dataset runs as a subprocess:
its start-up (imports, a pool) is measured with a 1-URL run and subtracted, and both figures are
printed; the ratio is against the start-up-free figure.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from advgen.data import load_split
from advgen.scrape.index import build_index
from advgen.scrape.scraper import ScraperConfig, scrape
from advgen.scrape.web import LoopbackResolver, SimulatedWeb, WebSpec, plan_web

SPEC = WebSpec(seed=0, p_expired=0, p_slow=0, p_flaky=0, p_robots=0, p_opt_out=0, p_drift=0, slow_ms=0,
               purchase=0, target=0, source=6)


class FlatWeb(SimulatedWeb):
    """The simulated web addressed as ``127.0.0.1:PORT/img/<id>.png`` (one host, every item)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await __import__("asyncio").sleep(self.latency_ms / 1000)
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n", content_type="text/plain")
        item = int(request.path.removeprefix("/img/").removesuffix(".png"))
        body, ctype = self.content(item)
        return web.Response(body=body, content_type=ctype)


@contextlib.contextmanager
def served(index, images, labels, latency_ms: float):
    """The flat web in a child process (its own interpreter lock, as a real server has), for
    both clients alike; yields its port."""
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Queue(), ctx.Event()

    def child() -> None:
        with FlatWeb(index, images, plan_web(index, SPEC, labels), SPEC, latency_ms) as w:
            ready.put(w.port)
            stop.wait()

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    try:
        yield ready.get(timeout=60)
    finally:
        stop.set()
        proc.join(10)


def ours(port: int, concurrency: int, n: int) -> float:
    urls = [f"http://127.0.0.1:{port}/img/{i:06d}.png" for i in range(n)]
    cfg = ScraperConfig(concurrency=concurrency, per_domain=concurrency, retries=0)
    start = time.perf_counter()
    got = scrape(urls, LoopbackResolver(port, {"127.0.0.1"}, set()), cfg)
    wall = time.perf_counter() - start
    assert all(f.status == "ok" for f in got), {f.status for f in got}
    return n / wall


def img2dataset(python: str, port: int, concurrency: int, n: int) -> tuple[float, float]:
    """(images/s, images/s after subtracting a 1-URL run's start-up)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def run(m: int, port: int, tmp: Path) -> float:
        pq.write_table(pa.table({"url": [f"http://127.0.0.1:{port}/img/{i:06d}.png" for i in range(m)]}), tmp / "urls.parquet")
        cmd = [str(Path(python).with_name("img2dataset")), "--url_list", str(tmp / "urls.parquet"), "--input_format", "parquet",
               "--url_col", "url", "--output_folder", str(tmp / f"out{m}"), "--output_format", "files",
               "--processes_count", "1", "--thread_count", str(concurrency), "--resize_mode", "no",
               "--disallowed_header_directives", "[]", "--retries", "0", "--timeout", "10",
               "--number_sample_per_shard", str(max(m, 1)), "--enable_wandb", "False"]
        start = time.perf_counter()
        # NO_ALBUMENTATIONS_UPDATE: its import would ask PyPI for a newer version each start
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
        if proc.returncode:
            raise RuntimeError(f"img2dataset failed:\n{proc.stderr[-2000:]}")
        wall = time.perf_counter() - start
        stats = json.loads(next((tmp / f"out{m}").glob("*_stats.json")).read_text())
        assert stats["successes"] == m, stats
        return wall

    with tempfile.TemporaryDirectory() as d:
        startup = run(1, port, Path(d))
        wall = run(n, port, Path(d))
    return n / wall, n / max(wall - startup, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency-ms", type=float, default=35.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--seconds", type=float, default=4.0, help="about this long per point (sets the number of URLs)")
    ap.add_argument("--img2dataset-python", default=None, help="an interpreter with img2dataset installed")
    args = ap.parse_args()
    x, y = load_split("data/prepared/fashion-mnist", "train")
    images, labels = x[:5000, 0].numpy(), y[:5000].numpy()
    index = build_index(images, labels, 500, 1.1, 0)
    print(f"latency {args.latency_ms:g} ms per request; images/s (higher is better)")
    print(f"{'connections':>11}  {'n':>5}  {'advgen':>8}  {'img2dataset':>11}  {'(start-up out)':>14}  ratio")
    for c in args.concurrency:
        n = int(min(5000, max(50, args.seconds * c * 1000 / args.latency_ms)))
        with served(index, images, labels, args.latency_ms) as port:
            mine = ours(port, c, n)
            other, other_net = (img2dataset(args.img2dataset_python, port, c, n)
                                if args.img2dataset_python else (float("nan"), float("nan")))
        print(f"{c:>11}  {n:>5}  {mine:>8.1f}  {other:>11.1f}  {other_net:>14.1f}  {mine / other_net:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
