"""The backdoor claim C10 and how it is judged (criterion fixed before any run)."""
from __future__ import annotations


from ..claims import Claims, Finding, verdict

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
    sweep = "; ".join(f"{n} {100 * m['undefended']['asr']['value']:.0f}%" for n, m in bd.items() if n not in judged)
    return Finding(
        experiment=(f"poison + train + backdoor_defense stages: `cnn` trained on poisoned copies of the training set "
                    f"({', '.join(judged)}; 3x3 checkerboard trigger), scored on the clean test set and its triggered "
                    f"copy against `{ref}`, the same recipe on clean data"),
        measured="; ".join(parts) + (f". Rest of the sweep (ASR): {sweep}" if sweep else ""),
        criterion=(f"for the lecture's source-specific BadNets and the largest all-to-one BadNets rate: ASR >= "
                   f"{100 * asr_min:.0f}% and clean-accuracy drop <= {100 * drop_max:.0f} point against the clean twin"),
        verdict=verdict(ok))
