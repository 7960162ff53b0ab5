"""The scrape area: the URL index, the simulated web and the scraper, against the loopback server.

Every bad input ends in a per-item status or a clear error naming the row or key, never a crash,
and no test ever leaves 127.0.0.1 (the resolver refuses any other name, the scraper any other
address)."""
from __future__ import annotations

import asyncio
import io
import struct
import zlib

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from advgen.scrape import experiment as ex
from advgen.scrape.index import build_index, hamming, phash, png_bytes, read_index, zipf_sizes
from advgen.scrape.scraper import POLICIES, Fetched, ScraperConfig, decode, judge, scrape
from advgen.scrape.web import SimulatedWeb, WebSpec, plan_web

N = 300


def _images(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    base = rng.integers(0, 256, size=(10, 28, 28))
    noise = rng.integers(-20, 21, size=(n, 28, 28))
    return np.clip(base[labels] + noise, 0, 255).astype(np.uint8), labels


def _spec(**kw) -> WebSpec:
    args = dict(seed=3, p_expired=0.1, p_slow=0.05, p_flaky=0.1, p_robots=0.05, p_opt_out=0.05, p_drift=0.2,
                slow_ms=5, purchase=0.05, target=0, source=6)
    return WebSpec(**{**args, **kw})


@pytest.fixture(scope="module")
def world():
    images, labels = _images()
    index = build_index(images, labels, 60, 1.1, seed=1)
    return index, images, labels


def _serve(world, spec=None, **kw) -> SimulatedWeb:
    index, images, labels = world
    spec = spec or _spec()
    return SimulatedWeb(index, images, plan_web(index, spec, labels), spec, **kw)


# ------------------------------------------------------------------------------ index
def test_phash_is_imagehash_bit_for_bit():
    imagehash = pytest.importorskip("imagehash")
    images, _ = _images(40)
    for img in images:
        assert phash(img) == int(str(imagehash.phash(Image.fromarray(img))), 16)


def test_zipf_sizes_sum_and_fall():
    sizes = zipf_sizes(6000, 500, 1.1)
    assert sum(sizes) == 6000 and min(sizes) >= 1 and sizes == sorted(sizes, reverse=True)
    assert sizes[0] / sizes[9] == pytest.approx(10 ** 1.1, rel=0.05)  # ~ 1 / rank^1.1 where sizes are large
    assert zipf_sizes(5, 10, 1.0) == [1, 1, 1, 1, 1]


def test_index_rows_hold_what_was_published(world, tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    index, images, labels = world
    assert len(index) == N and len(set(index.url)) == N
    assert index.sha256[7] == hashlib.sha256(png_bytes(images[7])).hexdigest()
    assert int(index.phash[7], 16) == phash(images[7])
    for d in np.unique(index.domain):  # one class per domain
        assert len(set(index.label[index.domain == d])) == 1
    pq.write_table(index.to_table(), tmp_path / "index.parquet")
    back = read_index(tmp_path / "index.parquet")
    assert back.url == index.url and (back.label == index.label).all() and back.phash == index.phash


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.drop_columns(["sha256"]), "missing column(s) ['sha256']"),
    (lambda t: t.set_column(1, "url", __import__("pyarrow").array(["ftp://x"] + [None] * (N - 1))), "row 1: 'url' is missing"),
    (lambda t: t.set_column(1, "url", __import__("pyarrow").array(["ftp://x/y.png"] * N)), "row 0: 'url' = 'ftp://x/y.png' is not an http(s) URL"),
    (lambda t: t.set_column(3, "sha256", __import__("pyarrow").array(["zz"] * N)), "row 0: 'sha256' = 'zz' is not 64 hex digits"),
])
def test_a_malformed_index_row_is_named(world, tmp_path, edit, needle):
    import pyarrow.parquet as pq

    pq.write_table(edit(world[0].to_table()), tmp_path / "bad.parquet")
    with pytest.raises(ValueError) as exc:
        read_index(tmp_path / "bad.parquet")
    assert needle in str(exc.value) and "bad.parquet" in str(exc.value)


# ------------------------------------------------------------------------------ the web
def test_the_attacker_buys_whole_target_domains_within_the_quota(world):
    index, _, labels = world
    plan = plan_web(index, _spec(purchase=0.05), labels)
    bought = plan.bought_items
    assert 0 < len(bought) <= round(0.05 * N) and (index.label[bought] == 0).all()
    for d in np.unique(index.domain[bought]):  # whole domains
        assert set(np.flatnonzero(index.domain == d)) <= set(bought.tolist())
    assert all(labels[s] == 6 for s in plan.poison_source.values())
    assert not plan.drift[bought].any()  # drift only on live domains
    again = plan_web(index, _spec(purchase=0.05), labels)
    assert again.state == plan.state and (again.drift == plan.drift).all()  # seeded
    assert len(plan_web(index, _spec(purchase=0.0), labels).bought_items) == 0


# ------------------------------------------------------------------------------ scraping the simulated web
def test_every_item_gets_the_status_its_domain_state_implies(world):
    index, images, labels = world
    with _serve(world) as w:
        got = scrape(index.url, w.resolver(), ScraperConfig(concurrency=16))
        plan = w.plan
    expect = {"alive": "ok", "slow": "ok", "flaky": "ok", "bought": "ok", "robots": "robots", "opt_out": "opt_out",
              "expired_404": "http_error", "expired_dns": "http_error"}
    for i, f in enumerate(got):
        assert f.status == expect[plan.state[int(index.domain[i])]], (i, f)
    seen = {plan.state[int(d)] for d in index.domain}
    assert {"flaky", "robots", "opt_out", "expired_dns", "bought"} <= seen  # the seed exercises them
    ok = [i for i, f in enumerate(got) if f.status == "ok" and not plan.drift[i] and i not in plan.poison_source]
    assert all((got[i].image == images[i]).all() and got[i].sha256 == index.sha256[i] for i in ok)
    poisoned = plan.bought_items[0]
    assert got[poisoned].sha256 != index.sha256[poisoned] and got[poisoned].image[-3, -3] in (0, 255)


def test_policies_judge_the_same_downloads(world):
    index, _, _ = world
    with _serve(world) as w:
        got = scrape(index.url, w.resolver(), ScraperConfig())
        plan = w.plan
    bought = set(plan.bought_items.tolist())
    for policy in POLICIES:
        j = ex.judge_all(index, got, policy, 10)
        entered = sum(j.keep[i] for i in bought)
        assert entered == (len(bought) if policy == "none" else 0), policy
        s = ex.stats(index, plan, j)
        assert sum(s["status"].values()) == N and s["poison_entered"] == entered and s["n_kept"] == int(j.keep.sum())
    drift = plan.drift > 0
    sha = ex.judge_all(index, got, "sha256", 10)
    assert not (sha.keep & drift).any()  # pinning loses every drifted item that downloaded
    ph = ex.judge_all(index, got, "phash", 10)
    assert (ph.keep & drift).sum() > 0.5 * sum(f.status == "ok" for f, d in zip(got, drift) if d)


def test_judge_is_the_policy_arithmetic():
    f = Fetched("ok", "", np.zeros((2, 2), np.uint8), "a" * 64, f"{0b1011:016x}")
    assert judge(f, "a" * 64, f"{0:016x}", "sha256", 0) == "ok"
    assert judge(f, "b" * 64, f"{0:016x}", "sha256", 0) == "hash_mismatch"
    assert judge(f, "b" * 64, f"{0:016x}", "phash", 3) == "ok"  # 3 bits differ
    assert judge(f, "b" * 64, f"{0:016x}", "phash", 2) == "phash_mismatch"
    assert judge(Fetched("robots"), "a" * 64, "0" * 16, "sha256", 64) == "robots"
    assert judge(f, "b" * 64, "0" * 16, "none", 0) == "ok" and hamming(0b1011, 0) == 3
    with pytest.raises(ValueError, match="policy 'md5'"):
        judge(f, "a", "0", "md5", 0)


def test_what_is_written_does_not_depend_on_concurrency(world):
    index, _, _ = world
    runs = []
    for c in (1, 32):
        with _serve(world) as w:
            runs.append(scrape(index.url, w.resolver(), ScraperConfig(concurrency=c, per_domain=2)))
    a, b = runs
    assert [f.status for f in a] == [f.status for f in b] and [f.sha256 for f in a] == [f.sha256 for f in b]


def test_a_rerun_fetches_only_the_missing_shards(world, tmp_path):
    index, _, _ = world
    cfg = ScraperConfig()
    with _serve(world) as w:
        first, n1 = ex.scrape_sharded(index, w, cfg, tmp_path, 100)
        (tmp_path / "shard_00001.json").unlink()  # as if killed while fetching shard 1
        before = w.requests
        again, n2 = ex.scrape_sharded(index, w, cfg, tmp_path, 100)
        assert w.requests - before < 200  # one shard: 100 URLs, robots.txt per domain, flaky retries; not 300 URLs
    assert (n1, n2) == (3, 1) and [f.sha256 for f in again] == [f.sha256 for f in first]
    with _serve(world, _spec(seed=4)) as w:  # another web: no shard is reused
        assert ex.scrape_sharded(index, w, cfg, tmp_path, 100)[1] == 3


def test_a_scraped_set_loads_like_an_ingested_one(world, tmp_path):
    import torch

    from advgen.data import load_split

    index, images, _ = world
    with _serve(world) as w:
        got = scrape(index.url, w.resolver(), ScraperConfig())
        plan = w.plan
    j = ex.judge_all(index, got, "sha256", 10)
    test = (torch.zeros(5, 1, 28, 28, dtype=torch.uint8), torch.arange(5))
    ex.write_dataset(tmp_path / "s", index, got, j, test, [str(c) for c in range(10)], {"policy": "sha256"})
    x, y = load_split(tmp_path / "s", "train")
    kept = np.flatnonzero(j.keep)
    assert len(y) == len(kept) and (y.numpy() == index.label[kept]).all() and (x[0, 0].numpy() == images[kept[0]]).all()
    rows = (tmp_path / "s" / "status.tsv").read_text().splitlines()
    assert rows[0] == "id\turl\tstatus\tdetail" and len(rows) == 1 + N - len(kept)
    assert any("\thash_mismatch\t" in r for r in rows) and plan.drift.any()


# ------------------------------------------------------------------------------ bad input, one by one
def _png_header(w: int, h: int) -> bytes:
    """A valid PNG signature and IHDR claiming w x h pixels, and a tiny IDAT (a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def _edge(world, routes: dict) -> SimulatedWeb:
    return _serve(world, extra=routes)


def _one(w: SimulatedWeb, path: str, **cfg) -> Fetched:
    return scrape([f"http://edge.test{path}"], w.resolver(), ScraperConfig(**{"retries": 2, "backoff_s": 0.01, **cfg}))[0]


def test_503_then_200_is_retried(world):
    calls = []

    async def flaky(request):
        calls.append(1)
        return web.Response(status=503) if len(calls) == 1 else web.Response(body=png_bytes(world[1][0]), content_type="image/png")
    with _edge(world, {"/f.png": flaky}) as w:
        assert _one(w, "/f.png").status == "ok" and len(calls) == 2
        calls.clear()
        assert _one(w, "/f.png", retries=0).status == "http_error"  # no retry left


def test_a_stalled_server_times_out(world):
    async def stall(request):
        await asyncio.sleep(5)
        return web.Response(body=b"late")
    with _edge(world, {"/s.png": stall}) as w:
        f = _one(w, "/s.png", timeout_s=0.2, retries=1)
    assert f.status == "timeout" and "after 2 attempts" in f.detail


def test_a_1_gb_body_stops_at_the_cap_and_memory_stays_flat(world):
    sent = []

    async def huge(request):
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})  # no Content-Length: streamed
        await resp.prepare(request)
        block = b"\0" * (1 << 20)
        try:
            for _ in range(1024):  # 1 GiB
                await resp.write(block)
                sent.append(len(block))
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        return resp
    import tracemalloc

    with _edge(world, {"/big.png": huge}) as w:
        tracemalloc.start()
        f = _one(w, "/big.png", max_bytes=2_000_000)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert f.status == "too_large" and "max_bytes" in f.detail
    assert sum(sent) < 64 << 20 and peak < 32 << 20  # a few MB sent and held, not a gigabyte


def test_a_declared_huge_body_is_refused_before_reading(world):
    async def declared(request):
        return web.Response(body=b"\0" * 3_000_000, content_type="image/png")
    with _edge(world, {"/d.png": declared}) as w:
        f = _one(w, "/d.png", max_bytes=1_000_000)
    assert f.status == "too_large" and "Content-Length 3000000" in f.detail


def test_a_decompression_bomb_is_refused_before_decoding(world):
    bomb = _png_header(100_000, 100_000)  # 10^10 pixels claimed in about a kilobyte

    async def serve_bomb(request):
        return web.Response(body=bomb, content_type="image/png")
    with _edge(world, {"/bomb.png": serve_bomb}) as w:
        f = _one(w, "/bomb.png")
    assert f.status == "too_large" and "decompression bomb" in f.detail and len(bomb) < 2000
    assert decode(_png_header(100_000, 100_000), ScraperConfig()).status == "too_large"


@pytest.mark.parametrize("location, needle", [
    ("file:///etc/passwd", "scheme 'file' refused"),
    ("gopher://edge.test/x", "scheme 'gopher' refused"),
    ("http://10.1.2.3/x.png", "address 10.1.2.3 refused: the scraper only reaches 127.0.0.1"),
    ("/loop.png", "more than 3 redirects"),
])
def test_redirects_to_other_schemes_addresses_or_in_a_loop_are_refused(world, location, needle):
    async def redirect(request):
        raise web.HTTPFound(location)
    with _edge(world, {"/r.png": redirect, "/loop.png": redirect}) as w:
        f = _one(w, "/r.png")
    assert f.status == "http_error" and needle in f.detail


def test_content_that_is_not_an_image(world):
    async def html(request):
        return web.Response(text="<html>", content_type="text/html")

    async def garbage(request):
        return web.Response(body=b"not a png at all", content_type="image/png")
    with _edge(world, {"/h.png": html, "/g.png": garbage}) as w:
        assert "content type 'text/html" in _one(w, "/h.png").detail
        g = _one(w, "/g.png")
    assert g.status == "undecodable" and "not a decodable image" in g.detail


def test_a_larger_image_is_resized_to_the_dataset_shape():
    buf = io.BytesIO()
    Image.fromarray(np.full((56, 40, 3), 200, np.uint8)).save(buf, format="PNG")
    f = decode(buf.getvalue(), ScraperConfig())
    assert f.status == "ok" and f.image.shape == (28, 28) and int(f.image.mean()) == 200


def test_no_test_leaves_loopback(world):
    with _serve(world) as w:
        unknown = scrape(["http://example.com/a.png"], w.resolver(), ScraperConfig(retries=0))[0]
        literal = scrape(["http://93.184.216.34/a.png"], w.resolver(), ScraperConfig(retries=0))[0]
    assert unknown.status == "http_error" and "not a simulated domain" in unknown.detail
    assert literal.status == "http_error" and "refused" in literal.detail


def test_a_non_loopback_listen_address_is_refused_in_params():
    import yaml

    from advgen.areas import validate_params
    from advgen.config import ConfigError
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scrape"]["host"] = "0.0.0.0"
    with pytest.raises(ConfigError, match=r"'scrape.host' must be 127.0.0.1.*found '0.0.0.0'"):
        validate_params(params)
    params["scrape"]["host"] = "127.0.0.1"
    params["scrape"]["web"]["p_drift"] = 1.5
    with pytest.raises(ConfigError, match=r"'scrape.web' probabilities must lie in \[0, 1\], found \{'p_drift': 1.5\}"):
        validate_params(params)
    params["scrape"]["web"]["p_drift"] = 0.1
    params["train"]["models"]["x"] = {"arch": "cnn", "data": "scraped/p9_none"}
    with pytest.raises(ConfigError, match=r"'train.models.x.data' = 'scraped/p9_none'; the scrape stage writes"):
        validate_params(params)


def test_the_user_agent_is_identifiable(world):
    agents = []

    async def echo(request):
        agents.append(request.headers.get("User-Agent"))
        return web.Response(body=png_bytes(world[1][0]), content_type="image/png")
    with _edge(world, {"/ua.png": echo}) as w:
        _one(w, "/ua.png")
    assert agents and agents[0].startswith("advgen-scraper/")


def test_robots_and_opt_out_are_honoured_per_domain(world):
    index, _, _ = world
    with _serve(world) as w:
        plan = w.plan
        robots = next(i for i in range(N) if plan.state[int(index.domain[i])] == "robots")
        opt = next(i for i in range(N) if plan.state[int(index.domain[i])] == "opt_out")
        before = w.requests
        got = scrape([index.url[robots], index.url[opt]], w.resolver(), ScraperConfig())
        assert w.requests - before == 3  # two robots.txt and the opt-out image; the disallowed image is not fetched
    assert got[0].status == "robots" and got[1].status == "opt_out" and "noai" in got[1].detail


