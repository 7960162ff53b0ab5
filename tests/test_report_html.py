"""The HTML report (reports/index.html) and its figures, opened in headless Chromium.

The browser tests skip when Chromium is not installed, unless the environment variable CI is
set (``.ci/run`` installs the Debian package ``chromium``): then they fail.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest

from advgen import areas
from advgen.browser import find_chromium, inspect_page
from advgen.document import Image, Section, Table, md_anchor, to_html
from advgen.report import OUTPUTS
from advgen.report import make_report as _make_report
from tests.conftest import ROOT

EVIL = "<script>alert(1)</script>"
QUOTE = "\"quote'&amp"
IMG_TAG = "<img src=x onerror=alert(2)>"


def make_report(reports: Path):
    return _make_report(reports, areas.report_parts(), areas.claim_registries())


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def browser() -> None:
    """Skip (or, under CI, fail) when Chromium or websocket-client is missing."""
    missing = []
    if find_chromium() is None:
        missing.append("chromium (Debian package `chromium`)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        missing.append("websocket-client (pip install -e '.[test]')")
    if missing:
        if _in_ci():
            pytest.fail(f"CI is set but {' and '.join(missing)} is missing")
        pytest.skip(f"{' and '.join(missing)} not installed")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _copy_reports(dest: Path) -> Path:
    """The committed reports/ tree (every stage's metrics, TSVs and example PNGs), copied whole."""
    shutil.copytree(ROOT / "reports", dest)
    return dest


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> Path:
    """A copy of the committed reports/ with the report written into it."""
    reports = _copy_reports(tmp_path_factory.mktemp("real") / "reports")
    make_report(reports).write(reports)
    return reports


def test_report_writes_its_outputs_deterministically(real_report, tmp_path):
    for out in OUTPUTS:
        assert (real_report / out).exists(), out
    figures = sorted(p.name for p in (real_report / "figures").iterdir())
    models = sorted(p.name for p in (real_report / "robustness").iterdir() if (p / "linf.tsv").exists())
    assert figures == sorted(["training.png", "worst_case.png", "backdoor_examples.png", "gan_fid.png",
                              "gan_d_fake.png", "gan_saturation.png", "gan_probe.png", "diffusion_samplers.png",
                              "diffusion_guidance.png", "diffusion_fid.png", "split_view_asr.png", "hiding.png",
                              *(f"robustness_{m}.png" for m in models)])
    for f in figures:
        w, h = _png_size((real_report / "figures" / f).read_bytes())
        assert w >= 400 and h >= 300
    headline = json.loads((real_report / "headline" / "report.json").read_text())
    assert all(isinstance(v, (int, str)) for v in headline.values())  # flat scalars, no other stage's numbers
    assert sum(headline[f"claims_{v}"] for v in ("supported", "not_supported", "not_measured")) == 21
    assert {k for k in headline if k.startswith("verdict_")} == {f"verdict_C{i}" for i in range(1, 19)} | {
        "verdict_C9a", "verdict_C9b", "verdict_C10a"}
    # a second run, on a tree that also holds the first run's outputs and a stale figure, gives the same bytes
    again = _copy_reports(tmp_path / "reports")
    (again / "figures").mkdir(exist_ok=True)
    (again / "figures" / "robustness_gone.png").write_bytes(b"stale")
    make_report(again).write(again)
    for out in ("summary.md", "index.html", "claims.json", "headline/report.json", *(f"figures/{f}" for f in figures)):
        assert (again / out).read_bytes() == (real_report / out).read_bytes(), out
    assert sorted(p.name for p in (again / "figures").iterdir()) == figures  # the stale figure is gone
    page = (real_report / "index.html").read_text()
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page


def test_the_claims_table_leads_and_links_to_sections_that_exist(real_report):
    """On the committed run: the claims come first in both files, and every claim whose experiment
    the report shows links to a section id the page has (the Markdown link to its heading)."""
    page = (real_report / "index.html").read_text()
    md = (real_report / "summary.md").read_text()
    assert md.split("\n## ", 1)[1].startswith("Claims\n")
    assert page.split("<section id=", 1)[1].startswith('"sec-claims">\n<h2>Claims</h2>')
    ids = set(re.findall(r'<section id="([^"]+)">', page))
    table = page.split('<table id="claims">', 1)[1].split("</table>", 1)[0]
    links = dict(re.findall(r'<tr><td[^>]*>([^<]+)</td>.*?<a href="#([^"]+)">', table))
    claims = [r["id"] for r in json.loads((real_report / "claims.json").read_text())]
    assert sorted(links) == sorted(set(claims) - {"C3"})  # C3 is a worked example, shown nowhere else
    assert set(links.values()) <= ids, set(links.values()) - ids
    headings = {md_anchor(h) for h in re.findall(r"(?m)^#{2,3} (.*)$", md)}
    md_links = re.findall(r"(?m)\]\(#([^)]+)\) \|$", md)
    assert len(md_links) == len(links) and set(md_links) <= headings


def test_report_page_in_chromium(browser, real_report, tmp_path):
    shot = tmp_path / "report.png"
    r = inspect_page(real_report / "index.html", shot, timeout=60)
    assert r.console_errors == []
    assert r.table_rows == 21  # the claims table, C1-C18, C9a, C9b and C10a
    assert r.script_elements == 0
    assert r.images and r.broken_images == []
    srcs = {i.src for i in r.images}
    assert {"figures/worst_case.png", "figures/training.png", "figures/robustness_cnn.png",
            "forge/c1.png", "forge/c2.png", "patch/examples.png", "attacks/cnn/pgd.png",
            "figures/diffusion_samplers.png", "diffusion/linear/trajectory.png", "autoencoder/reconstructions.png"} <= srcs
    assert all((real_report / s).is_file() for s in srcs)
    assert all(i.natural_width > 100 for i in r.images)
    assert r.title == "advgen report" and "Leaderboard" in r.text and "Sanity checks" in r.text
    data = shot.read_bytes()
    w, h = _png_size(data)
    assert w >= 1280 and h > 2000 and len(data) > 100_000  # the full page, not just the viewport


def test_a_broken_image_is_caught(browser, tmp_path):
    """The check can fail: an image that does not load shows up as broken and as a console error."""
    page = tmp_path / "index.html"
    page.write_text(to_html("broken", [Section("Images", [Image("missing.png", "not there"),
                                                          Table(["id"], [["C1"]], id="claims")])]))
    r = inspect_page(page, timeout=60)
    assert [i.src for i in r.broken_images] == ["missing.png"] and not r.ok
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in r.console_errors), r.console_errors
    assert r.table_rows == 1


def test_script_errors_are_caught(browser, tmp_path):
    """console.error and uncaught exceptions count as console errors (the report itself has no script)."""
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>js</title></head><body><p>x</p>"
                    "<script>console.error('boom')</script><script>throw new Error('bad thing')</script>"
                    "</body></html>")
    r = inspect_page(page, timeout=60)
    assert r.table_rows is None and r.script_elements == 2
    assert any("boom" in e for e in r.console_errors) and any("bad thing" in e for e in r.console_errors)


def test_data_is_escaped_in_the_page(browser, tmp_path):
    """Model names, check details and paths are text: nothing in the data becomes markup."""
    reports = _copy_reports(tmp_path / "reports")
    n_models = sum((p / "linf.tsv").exists() for p in (reports / "robustness").iterdir())
    train = json.loads((reports / "train" / "cnn" / "metrics.json").read_text())
    (reports / "train" / "evil").mkdir()
    (reports / "train" / "evil" / "metrics.json").write_text(json.dumps(train | {"model": EVIL}))
    shutil.copy(reports / "train" / "cnn" / "curve.tsv", reports / "train" / "evil" / "curve.tsv")
    rob = json.loads((reports / "robustness" / "cnn" / "metrics.json").read_text())
    rob["checks"][0] = {"name": EVIL, "passed": False, "detail": f"{QUOTE} {EVIL}"}
    for name in (QUOTE, IMG_TAG):
        shutil.copytree(reports / "robustness" / "cnn", reports / "robustness" / name)
        (reports / "robustness" / name / "metrics.json").write_text(json.dumps(rob))
    shutil.copytree(reports / "attacks" / "cnn", reports / "attacks" / QUOTE)
    make_report(reports).write(reports)
    page = (reports / "index.html").read_text()
    for raw in (EVIL, QUOTE, IMG_TAG, "<img src=x"):
        assert raw not in page
    for text in (EVIL, QUOTE, IMG_TAG):
        assert html.escape(text) in page
    assert "<script" not in page.lower()

    r = inspect_page(reports / "index.html", timeout=60)
    assert r.script_elements == 0 and r.console_errors == []
    assert EVIL in r.text and QUOTE in r.text and IMG_TAG in r.text  # shown literally
    assert r.broken_images == []  # no injected <img>, and the odd paths and figure names load
    assert len(r.images) == page.count("<img ")
    srcs = {i.src for i in r.images}
    assert "attacks/%22quote%27%26amp/fgsm.png" in srcs
    assert sum(s.startswith("figures/robustness_") for s in srcs) == n_models + 2  # with the two odd names
    assert r.table_rows == 21


def test_screenshot_command_records_the_page_it_shows(browser, tmp_path):
    import hashlib

    from advgen.cli import main

    page = tmp_path / "index.html"
    page.write_text(to_html("t", [Section("Claims", [Table(["id"], [["C1"]], id="claims")])]))
    png = tmp_path / "shots" / "index.png"
    main(["screenshot", str(page), str(png), "--max-height", "300"])
    assert png.read_bytes()[:4] == b"\x89PNG" and _png_size(png.read_bytes())[1] <= 300
    recorded = json.loads(png.with_suffix(".json").read_text())
    assert recorded == {"page": str(page), "page_sha256": hashlib.sha256(page.read_bytes()).hexdigest()}
