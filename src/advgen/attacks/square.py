from __future__ import annotations

import math

import torch

from .base import Attack, margin


def p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """Square Attack's fraction of pixels changed at iteration ``it`` (schedule rescaled to 10000 queries)."""
    it = int(it / n_queries * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                       (6000, 128), (8000, 256)):
        if it <= bound:
            return p_init / div
    return p_init / 512


class Square(Attack):
    r"""Square Attack (L-inf) from "Square Attack: a query-efficient black-box adversarial attack
    via random search" (Andriushchenko et al., 2020).

    Score-based black box: it reads only the model's output scores, never a gradient. It starts
    from vertical stripes of +-eps, then at each iteration proposes a random square window
    (side shrinking with the schedule ``p``) with a new +-eps per channel, and keeps the
    proposal when the margin loss z_y - max_{j != y} z_j decreases. Every forward pass of an
    example costs one query; an example stops once misclassified.

    Arguments:
        model (nn.Module): the model under attack (used only through its outputs).
        eps (float): maximum L-inf perturbation. (Default: 8/255)
        n_queries (int): query budget per example, the initial evaluation included. (Default: 5000)
        p_init (float): initial fraction of pixels changed. (Default: 0.8)
        resample (bool): redraw a proposal that would leave the window unchanged, as the
            authors' code does; torchattacks 3.5.1 does not, which wastes queries. (Default: True)
        generator (torch.Generator): all randomness, on the inputs' device.

    As in the authors' code, a window's corner is drawn from [0, H - s) x [0, W - s).

    After a call, ``queries_to_success`` (B,) holds, per example, the number of queries after
    which it was first misclassified (0: misclassified at the start; -1: never).

    Shape: images (B, C, H, W) in [0, 1]; labels (B,); output (B, C, H, W).
    """

    norms = ("Linf",)

    def __init__(self, model, eps: float = 8 / 255, n_queries: int = 5000, p_init: float = 0.8,
                 resample: bool = True, generator: torch.Generator | None = None):
        super().__init__(model, eps, "Linf")
        self.resample = resample
        if n_queries < 1:
            raise ValueError(f"n_queries must be >= 1, found {n_queries}")
        self.n_queries, self.p_init, self.generator = n_queries, p_init, generator
        self.queries_to_success = torch.empty(0)

    def _rand(self, *shape: int, device) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=device)

    def _signs(self, *shape: int, device) -> torch.Tensor:
        return torch.where(self._rand(*shape, device=device) < 0.5, -1.0, 1.0)

    @torch.no_grad()
    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        eps = self.eps
        adv = (x + eps * self._signs(b, c, 1, w, device=x.device)).clamp(0, 1)  # (B, C, H, W) stripes
        m = margin(self.logits(adv), y)
        used = torch.ones(b, dtype=torch.long, device=x.device)
        first = torch.full((b,), -1, dtype=torch.long, device=x.device)
        first[m < 0] = 1
        with torch.no_grad():
            clean_wrong = margin(self.model(x), y) < 0  # not counted: the clean label check
        first[clean_wrong] = 0
        for it in range(1, self.n_queries):
            active = (m >= 0).nonzero().squeeze(1)
            if len(active) == 0:
                break
            s = max(1, min(h - 1, int(round(math.sqrt(p_schedule(self.p_init, it, self.n_queries) * h * w)))))
            xa, cur = x[active], adv[active]
            r = int(self._rand(1, device=x.device).item() * (h - s))
            col = int(self._rand(1, device=x.device).item() * (w - s))
            window = cur[:, :, r:r + s, col:col + s] - xa[:, :, r:r + s, col:col + s]
            new = eps * self._signs(len(active), c, 1, 1, device=x.device)
            # Resample channels whose proposal would leave the window unchanged (as in the paper's code).
            for _ in range(10 if self.resample else 0):
                same = ((window - new).abs() < 1e-7).flatten(1).all(1)
                if not bool(same.any()):
                    break
                new[same] = eps * self._signs(int(same.sum()), c, 1, 1, device=x.device)
            cand = cur.clone()
            cand[:, :, r:r + s, col:col + s] = (xa[:, :, r:r + s, col:col + s] + new).clamp(0, 1)
            m_new = margin(self.logits(cand), y[active])
            used[active] += 1
            keep = m_new < m[active]
            adv[active[keep]] = cand[keep]
            m[active] = torch.minimum(m[active], m_new)
            newly = (m_new < 0) & (first[active] < 0)
            first[active[newly]] = used[active[newly]]
        self.queries_to_success = first.cpu()
        return adv
