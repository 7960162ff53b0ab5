"""The scrape area's report section (C10a): what each integrity policy let into the scraped
training set at each attacker purchase, and the attack success of the cnn trained on it.

A part of :func:`advgen.report.make_report` (listed in :mod:`advgen.areas`)."""
from __future__ import annotations

from pathlib import Path

from ..document import Paragraph, Section, Table
from ..report import figure_images, pct_ci

SPLIT_VIEW = "Scraping and split-view poisoning (C10a)"
CLAIM_SECTIONS = {"C10a": SPLIT_VIEW}
FIGURE = "figures/split_view_asr.png"


def _sets(collected: dict) -> dict[str, dict]:
    m = collected.get("split_view", {}).get("metrics") or {}
    return dict(sorted(m.get("sets", {}).items(), key=lambda kv: (kv[1]["fraction"], kv[1]["policy"])))


def _figure(reports: Path, collected: dict) -> dict[str, bytes]:
    from ..plots import line_plot

    sets = _sets(collected)
    if not sets:
        return {}
    series, bands = {}, {}
    for policy in dict.fromkeys(s["policy"] for s in sets.values()):
        rows = [s for s in sets.values() if s["policy"] == policy]
        x = [100 * s["fraction"] for s in rows]
        series[policy] = (x, [s["asr"]["value"] for s in rows])
        bands[policy] = ([s["asr"]["ci95"][0] for s in rows], [s["asr"]["ci95"][1] for s in rows])
    return {FIGURE: line_plot(series, bands=bands, title="Split-view poisoning: ASR against the share bought",
                              xlabel="index images on domains the attacker bought (%)",
                              ylabel="attack success rate (95% CI)")}


def _section(collected: dict) -> list[Section]:
    sets = _sets(collected)
    if not sets:
        return []
    m = collected["split_view"]["metrics"]
    rows = [[f"{100 * s['fraction']:g}%", s["policy"], s["n_bought"], s["poison_entered"], s["n_kept"],
             s["benign_rejected"], f"{s['drifted_kept']} / {s['drifted']}", pct_ci(s["ca"]["value"], s["ca"]["ci95"]),
             pct_ci(s["asr"]["value"], s["asr"]["ci95"])] for s in sets.values()]
    first = next(iter(collected.get(k, {}).get("metrics") for k in collected if k.startswith("scrape/")), None) or {}
    domains = ", ".join(f"{k} {v}" for k, v in (first.get("domains") or {}).items())
    clean = m["clean"]["asr"]
    return [Section(SPLIT_VIEW, [
        Paragraph(f"The `curate` stage publishes a URL index of the training images (sha256 and perceptual hash per "
                  f"item); the `scrape` stage downloads it from a seeded simulated web on 127.0.0.1 in which the "
                  f"attacker bought expired class-{m['target']} domains and serves BadNets-triggered class-"
                  f"{m['source']} images under them (split-view poisoning, Carlini et al. 2023). Domain states at "
                  f"download time: {domains or MISSING_TEXT}. Each policy judges the same downloads: `none` keeps every "
                  f"decodable image, `sha256` only bytes identical to the published ones, `phash` images within the "
                  f"perceptual-hash distance. A cnn ({m['epochs']} epochs) is trained on each kept set; ASR is measured "
                  f"on {m['n_triggered']} triggered class-{m['source']} test images (the clean twin, the same recipe on the "
                  f"images as published: "
                  f"{pct_ci(clean['value'], clean['ci95'])}%)."),
        Table(["bought", "policy", "poison bought", "poison in", "kept", "benign rejected", "drifted kept",
               "CA %", "ASR %"], rows, id="split_view"),
        *figure_images(collected, FIGURE, "ASR against the share of the index bought, per integrity policy")])]


MISSING_TEXT = "not recorded"
SECTIONS = (_section,)
FIGURES = (_figure,)
