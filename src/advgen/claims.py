"""The claims registry: every testable claim C1–C18 of the lecture, and how it is judged.

Each claim has an evaluator that reads the collected metrics and returns the experiment,
the measured figure, the criterion (fixed here, before any run) and the verdict. A claim
whose experiment has not landed yet is reported as ``not_measured``. Later issues add
evaluators; they never edit a criterion after seeing a result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

VERDICTS = ("supported", "not_supported", "not_measured")

CLAIMS: dict[str, str] = {
    "C1": "Gradient descent on the pixels from noise forges an image classified as the target "
          "that does not look like the target",
    "C2": "From a real image, minimising ||softmax(f(x)) - onehot(t)||^2 + lambda ||x - x0||^2 "
          "reaches the target while staying close to x0",
    "C3": "Logistic regression w=(1,3,-1,2,2,3), b=0: x* = x + 0.2 w moves sigma(w.x) from 0.018 to 0.83",
    "C4": "The damage an epsilon-bounded perturbation can do grows with the input dimension",
    "C5": "FGSM, x + eps sign(grad_x J), is a one-shot attack that changes predictions at small eps",
    "C6": "Adversarial examples crafted on a surrogate transfer to a black-box target",
    "C7": "Rate-limiting queries weakens query-based black-box attacks",
    "C8": "A universal patch with printability and smoothness terms fools the model across images",
    "C9": "Adversarial training (clean + FGSM loss) makes the model more robust",
    "C10": "A poisoned trigger patch makes triggered inputs go to the target class while clean "
           "accuracy stays normal",
    "C11": "The saturating generator loss log(1 - D(G(z))) gives tiny gradients when D(G(z)) ~ 0",
    "C12": "When G is stuck, k discriminator steps per generator step helps",
    "C13": "A GAN can mode-collapse: good-looking samples that do not cover the data distribution",
    "C14": "GAN code space is roughly linear: code arithmetic and interpolation give smooth changes",
    "C15": "Diffusion trains more stably and gives more varied samples than a GAN",
    "C16": "Diffusion sampling is expensive: one network call per denoising step",
    "C17": "Latent diffusion is much cheaper than pixel-space diffusion at similar quality",
    "C18": "Conditioning the denoiser on a class guides generation at test time",
}


@dataclass(frozen=True)
class Finding:
    """One evaluated claim; ``measured`` is a short human-readable figure."""

    experiment: str
    measured: str
    criterion: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


Evaluator = Callable[[dict], "Finding | None"]
EVALUATORS: dict[str, Evaluator] = {}


def evaluator(claim_id: str) -> Callable[[Evaluator], Evaluator]:
    """Register the evaluator of ``claim_id``."""
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}")

    def wrap(fn: Evaluator) -> Evaluator:
        EVALUATORS[claim_id] = fn
        return fn
    return wrap


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# The lecture's slide: w = (1, 3, -1, 2, 2, 3), b = 0 and x = (1, -1, 2, 0, 3, -2), so that
# w.x = -4 and sigma(w.x) = 0.018 (the transcript gives w and the 0.018, not x itself).
C3_W = (1.0, 3.0, -1.0, 2.0, 2.0, 3.0)
C3_X = (1.0, -1.0, 2.0, 0.0, 3.0, -2.0)
C3_EPS = 0.2


def c3_worked_example(w=C3_W, x=C3_X, eps: float = C3_EPS) -> dict[str, float]:
    """Compute the lecture's logistic-regression example, and FGSM's version of it.

    Returns sigma(w.x), sigma(w.(x + eps w)) and sigma(w.(x + eps sign(w))), with
    ||w||^2 and ||w||_1 (the increase of the logit is eps ||w||^2 and eps ||w||_1).
    """
    dot = sum(wi * xi for wi, xi in zip(w, x))
    norm2 = sum(wi * wi for wi in w)
    norm1 = sum(abs(wi) for wi in w)
    return {"before": _sigmoid(dot), "after_eps_w": _sigmoid(dot + eps * norm2),
            "after_eps_sign_w": _sigmoid(dot + eps * norm1), "w_norm2_sq": norm2, "w_norm1": norm1,
            "logit_before": dot}


@evaluator("C3")
def _c3(_: dict) -> Finding:
    r = c3_worked_example()
    ok = abs(r["before"] - 0.018) < 0.0005 and abs(r["after_eps_w"] - 0.83) < 0.005
    return Finding(
        experiment="report stage: advgen.claims.c3_worked_example (exact arithmetic)",
        measured=(f"sigma(w.x)={r['before']:.4f} -> sigma(w.x*)={r['after_eps_w']:.4f} "
                  f"(||w||^2={r['w_norm2_sq']:.0f}; FGSM step eps*sign(w) gives {r['after_eps_sign_w']:.4f})"),
        criterion="|before - 0.018| < 0.0005 and |after - 0.83| < 0.005",
        verdict="supported" if ok else "not_supported")


def claims_table(collected: dict) -> list[dict]:
    """One row per claim C1–C18: ``{id, claim, experiment, measured, criterion, verdict}``."""
    rows = []
    for cid, text in CLAIMS.items():
        found = EVALUATORS[cid](collected) if cid in EVALUATORS else None
        if found is None:
            found = Finding(experiment="(not implemented yet)", measured="", criterion="", verdict="not_measured")
        rows.append({"id": cid, "claim": text, "experiment": found.experiment, "measured": found.measured,
                     "criterion": found.criterion, "verdict": found.verdict})
    return rows
