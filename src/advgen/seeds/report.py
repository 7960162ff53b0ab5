"""The replicate area's report section: C9's and C10's figures per seed, beside the rule they
are judged by (:data:`advgen.claims.SEED_RULE`).

A part of :func:`advgen.report.make_report` (listed in :mod:`advgen.areas`)."""
from __future__ import annotations

from ..claims import SEED_RULE, seed_runs
from ..document import Paragraph, Section, Table
from ..report import pct_ci

SEEDS = "Verdicts over seeds (C9, C10)"
CLAIM_SECTIONS: dict[str, str] = {}  # C9 and C10 link to their own areas' sections


def _points(d: dict) -> str:
    return f"{100 * d['value']:+.2f} [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"


def _section(collected: dict) -> list[Section]:
    c9, c10 = seed_runs(collected, "replicate/c9"), seed_runs(collected, "replicate/c10")
    if not c9 and not c10:
        return []
    parts = [Paragraph(
        "C9 and C10 rest on trained models, so each is trained again from every seed of `replicate.seeds` "
        "(the `replicate_c9@<seed>` and `replicate_c10@<seed>` stages; Lucic et al. 2018: seed variance can swamp "
        "the difference between configurations). The seed drives the initialisation, batch order, dropout, the "
        "training attacks' random starts and, for C10, which images are poisoned; the evaluation images are the "
        f"main run's. The verdict in the claims table is the seed rule's: {SEED_RULE}. C9's replicates run the "
        "cascade without its transfer stage (transfer needs the whole zoo retrained). The C11-C18 GAN and "
        "diffusion claims are not replicated: see the note on seeds in docs/pipeline.md.")]
    if c9:
        rows = [[s, f"{100 * m['base_test_accuracy']:.1f}", f"{100 * m['defended_test_accuracy']:.1f}",
                 f"{100 * m['base_pgd']:.1f}", f"{100 * m['defended_worst_case']:.1f}", f"{100 * m['gain']:+.1f}",
                 f"{m['paired']['p_a_higher']:.2g}"] for s, m in c9.items()]
        m0 = next(iter(c9.values()))
        parts.append(Table(["seed", f"{m0['base']} clean %", f"{m0['defended']} clean %",
                            f"{m0['base']} PGD-20 % (eps {m0['eps']:g})", f"{m0['defended']} worst case %",
                            "gain (points)", "paired p"], rows, id="seeds_c9"))
    if c10:
        rows = [[s, n, pct_ci(r["ca"]["value"], r["ca"]["ci95"]), pct_ci(r["asr"]["value"], r["asr"]["ci95"]),
                 _points(r["ca_drop"]), f"{100 * m['reference_ca']:.1f}"]
                for s, m in c10.items() for n, r in m["configs"].items()]
        parts.append(Table(["seed", "config", "CA %", "ASR %", "CA drop (points, 95% CI)", "clean twin CA %"], rows,
                           id="seeds_c10"))
    return [Section(SEEDS, parts)]


SECTIONS = (_section,)
FIGURES = ()
