"""The backdoors sections of the report (C10): CA/ASR/RA of every poisoned model, the defenses
against them, which defense catches which attack, and a figure of poisoned training examples.

A part of :func:`advgen.report.make_report` (listed in :mod:`advgen.areas`); helpers come from
the core :mod:`advgen.report`, never the other way round. It imports no torch itself.
"""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image as PILImage

from ..document import Cell, Paragraph, Section, Table
from ..report import MISSING, figure_images, models, num, pct, pct_ci

BACKDOORS = "Backdoors (C10)"

#: The section that shows each claim's experiment.
CLAIM_SECTIONS = {"C10": BACKDOORS}

DEFENSE_NAMES = {"spectral": "spectral signatures", "clustering": "activation clustering", "strip": "STRIP",
                 "fine_pruning": "fine-pruning", "fine_tuning": "fine-tuning"}


def backdoored(collected: dict) -> dict[str, dict]:
    """``{model: backdoor_defense metrics}``, ordered by attack then rate."""
    bd = models(collected, "backdoor")
    return dict(sorted(bd.items(), key=lambda kv: (kv[1]["poison"]["attack"], "source" in kv[1]["poison"],
                                                   kv[1]["poison"]["rate"])))


def describe(p: dict) -> str:
    """A poisoning config in words: ``badnets 1%, class 6 -> 0, random location``."""
    where = f"class {p['source']} -> {p['target']}" if "source" in p else f"all -> {p['target']}"
    extra = [f"alpha {p['alpha']:g}" if "alpha" in p else "", f"{p['location']} location" if "location" in p else "",
             f"PGD eps {p['eps']:g}" if "eps" in p else "",
             f"+{p['keep_target']:g}x target images kept" if p.get("keep_target") else ""]
    return ", ".join([f"{p['attack']} {100 * p['rate']:g}%", where, *[e for e in extra if e]])


def _v(m: dict) -> str:
    return pct_ci(m["value"], m["ci95"])


def _drop(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{100 * d['value']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] (p = {d['p_ref_higher']:.2g})"


def _backdoors(collected: dict) -> list[Section]:
    bd = backdoored(collected)
    if not bd:
        return []
    first = next(iter(bd.values()))
    ref = first["reference"]
    others = [r for r in first["ca_drop"] if r != ref]
    rows = []
    for name, m in bd.items():
        u = m["undefended"]
        rows.append([name, describe(m["poison"]), m["n_poisoned_in_train"], _v(u["ca"]), _v(u["asr"]), _v(u["ra"]),
                     _drop(m["ca_drop"][ref]), *(_drop(m["ca_drop"][r]) for r in others)])
    blocks: list = [
        Paragraph(f"Every poisoned model is a `cnn` trained by the train stage on its poisoned copy of the training "
                  f"set for {first['epochs']} epochs (`poison` stage: `data/poisoned/<name>`); `{ref}` is its clean "
                  f"twin (same seed, recipe and epochs, clean data), so the CA drop against it is the poison's effect "
                  f"alone. On n = {first['n_eval']} clean test images and their triggered copies: **CA** clean accuracy, "
                  f"**ASR** triggered images of a non-target class (of the source class, if any) put in the target "
                  f"class (n = {first['n_asr']} for all-to-one), **RA** the same images still classified correctly. "
                  "% with 95% Wilson intervals; CA drop in points with a paired 95% interval and McNemar's exact p "
                  "(that the reference is not more accurate)."),
        Table(["model", "attack", "poisoned in training", "CA", "ASR", "RA", f"CA drop vs {ref}",
               *(f"CA drop vs {r}" for r in others)], rows),
        *figure_images(collected, "figures/backdoor_examples.png",
                 "Poisoned training images: each pair of rows is clean (top) and poisoned (bottom); one pair per "
                 "poisoning config, in the order of the table"),
    ]
    return [Section(BACKDOORS, blocks), *_defense_sections(bd, collected)]


def _defense_sections(bd: dict, collected: dict) -> list[Section]:
    rows, matrix = [], []
    names = [d for d in DEFENSE_NAMES if any(d in m.get("defenses", {}) for m in bd.values())]
    for model, m in bd.items():
        if not m.get("defenses"):
            continue
        u = m["undefended"]
        wall = collected.get(f"backdoor/{model}.defenses", {}).get("cost", {}).get("defense_wall_s", {})
        cells = []
        for d in names:
            r = m["defenses"].get(d)
            if r is None:
                cells.append(MISSING)
                continue
            det = r.get("detection")
            caught = r["asr"]["value"] <= 0.1 and u["ca"]["value"] - r["ca"]["value"] <= 0.02
            cells.append(Cell(f"ASR {pct(r['asr']['value'])}, DER {r['der']:.2f}", "pass" if caught else "fail"))
            removed = f"{r['n_removed']} of {r['n_removed'] + r['n_retrained']}" if "n_removed" in r else MISSING
            rows.append([model, DEFENSE_NAMES[d], removed,
                         pct((det or {}).get("tpr"), placeholder=MISSING), pct((det or {}).get("fpr"), placeholder=MISSING),
                         num((det or {}).get("auroc"), 3),
                         _v(r["ca"]), _v(r["asr"]), _v(r["ra"]), num(r["der"], 3), num(wall.get(d), 0)])
        matrix.append([model, f"{pct(u['asr']['value'])}", *cells])
    if not rows:
        return []
    any_m = next(m for m in bd.values() if m.get("defenses"))
    return [Section("Backdoor defenses", [
        Paragraph(f"Each defense sees the poisoned model, its poisoned training set and {any_m['n_clean']} trusted clean "
                  "training images; the poison index only scores the detections. **Spectral signatures** (Tran et al. "
                  "2018) and **activation clustering** (Chen et al. 2018) flag training images from the penultimate "
                  "features and retrain without them (same recipe and seed); **STRIP** (Gao et al. 2019) flags test "
                  "inputs whose prediction stays confident under superimposed clean images, at a threshold fixed for "
                  "1% false rejections on the clean images (a flagged input counts as neither correct nor a success); "
                  "**fine-pruning** (Liu et al. 2018) prunes the last conv layer's channels most dormant on the clean "
                  "images, then fine-tunes on them; **fine-tuning** alone is its baseline. TPR/FPR: flagged poisoned "
                  "training images (STRIP: triggered test inputs) and flagged clean ones. DER = (max(0, dASR) - "
                  "max(0, dCA) + 1) / 2 (BackdoorBench). Spectral signatures get the attack's poison count as the "
                  "defender's bound (an oracle, as in Tran et al.) and remove 1.5 times it from every class, at most "
                  "half a class: `removed` shows what that costs in training data. s: wall seconds of the defense on this run's machine "
                  "(`reports/cost/backdoor/<model>.defenses.json`)."),
        Table(["model", "defense", "removed", "TPR", "FPR", "AUROC", "CA after", "ASR after", "RA after", "DER", "s"],
              rows),
        Paragraph("Which defense catches which attack: ASR after the defense and its DER; marked as caught when ASR "
                  "<= 10% with a CA drop <= 2 points (the issue's goal for fine-pruning)."),
        Table(["model", "ASR before", *(DEFENSE_NAMES[d] for d in names)], matrix)])]


def _examples_figure(reports: Path, collected: dict) -> dict[str, bytes]:
    names = [n for n in backdoored(collected) if (reports / "poison" / n / "examples.png").is_file()]
    names += sorted(n.split("/", 1)[1] for n in collected if n.startswith("poison/") and n.count("/") == 1
                    and n.split("/", 1)[1] not in names and "examples.png" in collected[n].get("files", []))
    if not names:
        return {}
    images = [PILImage.open(reports / "poison" / n / "examples.png").convert("RGB") for n in names]
    canvas = PILImage.new("RGB", (max(i.width for i in images), sum(i.height + 4 for i in images)), (255, 255, 255))
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height + 4
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return {"figures/backdoor_examples.png": buf.getvalue()}


SECTIONS = (_backdoors,)
FIGURES = (_examples_figure,)
