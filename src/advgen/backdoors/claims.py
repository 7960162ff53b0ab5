"""The backdoor claim C10 and how it is judged (criterion fixed before any run)."""
from __future__ import annotations


from ..claims import SEED_RULE, Claims, Finding, SeedFigure, over_seeds, seed_runs, verdict

CLAIMS = Claims({
    "C10": "A poisoned trigger patch makes triggered inputs go to the target class while clean "
           "accuracy stays normal",
})


@CLAIMS.evaluator("C10")
def _c10(c: dict) -> Finding | None:
    asr_min, drop_max = 0.90, 0.01
    bd = {k.split("/", 1)[1]: v["metrics"] for k, v in c.items()
          if k.startswith("backdoor/") and k.count("/") == 1 and "metrics" in v}
    # The lecture's scenario (a patch, source class -> target, some target images triggered too)
    # and the strongest all-to-one BadNets of the sweep.
    lecture = [n for n, m in bd.items() if m["poison"]["attack"] == "badnets" and "source" in m["poison"]]
    all_to_one = [n for n, m in bd.items() if m["poison"]["attack"] == "badnets" and "source" not in m["poison"]]
    judged = lecture[:1] + sorted(all_to_one, key=lambda n: bd[n]["poison"]["rate"])[-1:]
    if not judged:
        return None
    ref = bd[judged[0]]["reference"]
    parts, ok = [], True
    for n in judged:
        m = bd[n]
        asr, drop = m["undefended"]["asr"], m["ca_drop"][ref]
        ok &= asr["value"] >= asr_min and drop["value"] <= drop_max
        parts.append(f"{n}: ASR {100 * asr['value']:.1f}% [{100 * asr['ci95'][0]:.1f}, {100 * asr['ci95'][1]:.1f}], "
                     f"CA {100 * m['undefended']['ca']['value']:.1f}% (drop {100 * drop['value']:+.2f} points vs {ref})")
    judged_seeds = _over_seeds(c, asr_min, drop_max)
    sweep = "; ".join(f"{n} {100 * m['undefended']['asr']['value']:.0f}%" for n, m in bd.items() if n not in judged)
    return Finding(
        experiment=(f"poison + train + backdoor_defense stages: `cnn` trained on poisoned copies of the training set "
                    f"({', '.join(judged)}; 3x3 checkerboard trigger), scored on the clean test set and its triggered "
                    f"copy against `{ref}`, the same recipe on clean data"),
        measured="; ".join(parts) + (f". Rest of the sweep (ASR): {sweep}" if sweep else ""),
        criterion=(f"for the lecture's source-specific BadNets and the largest all-to-one BadNets rate: ASR >= "
                   f"{100 * asr_min:.0f}% and clean-accuracy drop <= {100 * drop_max:.0f} point against the clean twin"
                   + (f"; {SEED_RULE}" if judged_seeds else "")),
        verdict=judged_seeds.verdict if judged_seeds else verdict(ok),
        seeds=(f"{judged_seeds.text} (replicate_c10 stages: poisoning, the poisoned models and their clean twin "
               "retrained per seed)") if judged_seeds else "")


def _over_seeds(c: dict, asr_min: float, drop_max: float):
    """The seed rule's judgement of the replicate_c10 runs (None with fewer than 2 seeds)."""
    seeds = seed_runs(c, "replicate/c10")
    if len(seeds) < 2:
        return None
    names = list(next(iter(seeds.values()))["configs"])
    figures, ok = [], [True] * len(seeds)
    for n in names:
        rows = [r["configs"][n] for r in seeds.values()]
        figures += [SeedFigure(f"{n} ASR", tuple(r["asr"]["value"] for r in rows), asr_min),
                    SeedFigure(f"{n} CA drop (points)", tuple(r["ca_drop"]["value"] for r in rows), drop_max,
                               higher=False, unit="")]
        ok = [o and r["asr"]["value"] >= asr_min and r["ca_drop"]["value"] <= drop_max for o, r in zip(ok, rows)]
    return over_seeds(list(seeds), figures, ok)
