"""The defenses area's headline figures (``dvc metrics``) for the defend, sanitize and certify stages."""
from __future__ import annotations

from typing import Any

from ..headline import Scalar


def defend(m: dict[str, Any]) -> dict[str, Scalar]:
    """A defended model's clean accuracy, its training cost in gradients, and the overfitting flag
    (its robust accuracy is in its robustness headline)."""
    return {"test_accuracy": m["test_accuracy"], "training_grad_evals": m["training_grad_evals"],
            "catastrophic_overfitting": m["catastrophic_overfitting"]}


def sanitize(m: dict[str, Any]) -> dict[str, Any]:
    """The sanitize stage's headline (17 scalars in 5 groups): naive vs adaptive, side by side.

    ``auroc_naive`` (FGSM, PGD, Square crafted on the raw model); ``detection_rate`` (TPR at the
    threshold) of naive PGD, BPDA-PGD and detector-aware PGD; ``safety_net`` accuracies;
    ``squeezed_both``: the "both" squeezer as preprocessing, clean and under naive PGD,
    BPDA-PGD and Square. The raw model's own figures are in other stages' headlines.
    """
    det, both = m["detector"]["attacks"], m["preprocessing"]["both"]
    aware, pgd = det["detector_aware_pgd"], det["pgd"]
    out = {
        "threshold": {"fpr_val": m["threshold"]["fpr_val"]["rate"], "fpr_eval": m["threshold"]["fpr_eval"]["rate"]},
        "auroc_naive": {a: det[a]["detection"]["auroc"] for a in ("fgsm", "pgd", "square")
                        if det[a]["detection"]["auroc"] is not None},
        "detection_rate": {"pgd_naive": pgd["detection"]["tpr"], "pgd_bpda": det["bpda_pgd"]["detection"]["tpr"],
                           "pgd_detector_aware": aware["detection"]["tpr"]},
        "safety_net": {"clean": m["detector"]["clean_safety_net"]["accuracy"],
                       "adv_pgd_naive": pgd["safety_net"]["adversarial"]["accuracy"],
                       "adv_pgd_detector_aware": aware["safety_net"]["adversarial"]["accuracy"],
                       "mean_pgd_naive": pgd["safety_net"]["mean"]["accuracy"],
                       "mean_pgd_detector_aware": aware["safety_net"]["mean"]["accuracy"]},
        "squeezed_both": {"clean": both["clean"]["accuracy"], "pgd_naive": both["pgd_naive"]["accuracy"],
                          "pgd_bpda": both["pgd_bpda"]["accuracy"], "square": both["square"]["accuracy"]},
    }
    # A rate over an empty set (no successful adversarial example) is None: left out.
    return {g: {k: v for k, v in vals.items() if v is not None} for g, vals in out.items()}


def certify(m: dict[str, Any]) -> dict[str, Any]:
    """The ``certify`` stage's headline scalars: certified accuracy at radius 0 and each radius,
    the smoothed classifier's accuracy under PGD-L2 at eps 0 and each radius, the abstain rate
    and the failed checks."""
    return {"certified": {f"r={r}": v for r, v in m["certified_accuracy"].items()},
            "empirical": {f"eps={e}": v for e, v in m["empirical_accuracy"].items()},
            "abstain_rate": m["abstain_rate"], "checks_failed": m["checks_failed"]}


def hiding(m: dict[str, Any]) -> dict[str, Any]:
    """The ``hiding`` stage's headline: per model, its clean accuracy and each API's worst-case
    accuracy after the two largest query budgets (``label@1000``: the label-only API after 1,000
    queries per image); the other budgets are in the curve."""
    return {name: {"clean": r["clean_accuracy"],
                   **{f"{api}@{b}": r["apis"][api]["accuracy"][str(b)] for api in ("scores", "rounded", "label")
                      for b in r["budgets"][-2:]}}
            for name, r in m["models"].items()}
