"""The scrape area's claim C10a (split-view poisoning of a scraped dataset) and how it is judged
(criterion fixed here before any run)."""
from __future__ import annotations

from ..claims import Claims, Finding, metrics, verdict

CLAIMS = Claims({
    "C10a": "Models trained on scraped web data can be poisoned by whoever controls the content behind "
            "the URLs (split-view poisoning of expired domains); pinning each item's hash in the index "
            "stops it, at the cost of benign items whose bytes changed",
})


@CLAIMS.evaluator("C10a")
def _c10a(c: dict) -> Finding | None:
    asr_min, floor_margin = 0.90, 0.05
    m = metrics(c, "split_view")
    if not m or not m.get("sets"):
        return None
    sets = m["sets"]
    largest = max(s["fraction"] for s in sets.values())
    at = {s["policy"]: s for s in sets.values() if s["fraction"] == largest}
    floor = m["clean"]["asr"]["value"]
    pinned = [s for s in sets.values() if s["policy"] == "sha256"]
    if "none" not in at or "sha256" not in at:
        return None
    ok = (at["none"]["asr"]["value"] >= asr_min and all(s["poison_entered"] == 0 for s in pinned)
          and at["sha256"]["asr"]["value"] <= floor + floor_margin)

    def row(s: dict) -> str:
        a = s["asr"]
        return (f"{s['policy']}: {s['poison_entered']} of {s['n_bought']} poisoned images in, ASR {100 * a['value']:.1f}% "
                f"[{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}], CA {100 * s['ca']['value']:.1f}%, "
                f"{s['benign_rejected']} benign items rejected ({s['drifted_kept']} of {s['drifted']} drifted kept)")
    parts = [row(at[p]) for p in ("none", "sha256", "phash") if p in at]
    return Finding(
        experiment=(f"curate + scrape + split_view stages: the published URL index of the training images scraped "
                    f"from a seeded simulated web (expired, slow, flaky, robots, opt-out domains; benign drift) in "
                    f"which the attacker bought target-class domains holding {100 * largest:g}% of the index and "
                    f"serves triggered class-{m['source']} images under class-{m['target']} URLs; a cnn "
                    f"({m['epochs']} epochs) trained on what each integrity policy keeps; ASR on {m['n_triggered']} "
                    f"triggered test images, beside its clean twin trained on the published images as published"),
        measured=(f"at {100 * largest:g}% bought: " + "; ".join(parts)
                  + f"; the clean twin's ASR on the same images {100 * floor:.1f}%"),
        criterion=(f"with no integrity check the largest purchase gives ASR >= {100 * asr_min:.0f}%, AND sha256 "
                   f"pinning lets no poisoned image in at any purchase and keeps the ASR within "
                   f"{100 * floor_margin:.0f} points of the clean twin's (the same recipe on the images as published)"),
        verdict=verdict(ok))
