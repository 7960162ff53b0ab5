from __future__ import annotations

import math

import torch

from .base import Attack, margin

# Two clipped windows are "the same" when every entry differs by less than this (the authors' 10**-7).
SAME_TOL = 1e-7


def p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """Square Attack's fraction of pixels changed at iteration ``it`` (0-based; schedule rescaled to 10000 queries)."""
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
    example costs one query, and an example stops (is queried no more) as soon as it is
    misclassified.

    A proposal that is a no-op after clipping to [0, 1], i.e. whose clipped window
    ``clip(x + new)`` equals the current (clipped) window, is redrawn before it is queried, as
    in the authors' ``square_attack_linf``. Such proposals are common where pixels sit at 0 or 1
    (half of a Fashion-MNIST image is 0: once a pixel's delta is clipped to 0, proposing -eps
    there again changes nothing). Per channel at most one sign is a no-op, so at most one sign
    vector is; the redraw flips a uniformly drawn non-empty subset of its channels, which gives
    exactly the distribution of the authors' "redraw while unchanged" loop (uniform over the
    sign vectors that change the window) without a data-dependent loop.

    Arguments:
        model (nn.Module): the model under attack (used only through its outputs).
        eps (float): maximum L-inf perturbation. (Default: 8/255)
        n_queries (int): query budget per example, the initial evaluation included. (Default: 5000)
        p_init (float): initial fraction of pixels changed. (Default: 0.8)
        resample (bool): redraw a proposal that is a no-op after clipping, as the authors' code
            does; torchattacks 3.5.1 does not, which wastes queries. (Default: True)
        generator (torch.Generator): the source of all randomness, normally a CPU generator:
            numbers are drawn on the generator's device and then moved to the inputs' device,
            so a GPU run draws the same numbers as a CPU run. The number of draws per iteration
            does not depend on the data either. ``None``: torch's global CPU generator.

    As in the authors' code, a window's corner is drawn from [0, H - s) x [0, W - s) (one
    window per iteration, shared by the batch; the signs are drawn per example).

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

    @property
    def _gen_device(self) -> torch.device:
        return self.generator.device if self.generator is not None else torch.device("cpu")

    def _rand(self, *shape: int) -> torch.Tensor:
        """U[0, 1) of ``shape``, drawn on the generator's device (CPU)."""
        return torch.rand(shape, generator=self.generator, device=self._gen_device)

    def _signs(self, *shape: int) -> torch.Tensor:
        """Random +-1 of ``shape``, on the generator's device."""
        return torch.where(self._rand(*shape) < 0.5, -1.0, 1.0)

    def _flip_masks(self, n: int, c: int) -> torch.Tensor:
        """(n, c) bool: a uniformly drawn non-empty subset of the c channels per row (c <= 62 exactly)."""
        bits = min(c, 62)
        code = torch.randint(1, 2 ** bits, (n,), generator=self.generator, device=self._gen_device)
        mask = (code[:, None] >> torch.arange(bits, device=self._gen_device)) & 1
        if c > bits:
            mask = torch.cat([mask, mask.new_zeros(n, c - bits)], 1)
        return mask.bool()

    @staticmethod
    def _unchanged(x_win: torch.Tensor, cur_win: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """(n,) True where writing ``x + new`` into the window, clipped to [0, 1], leaves the
        current (clipped) window ``cur_win`` as it is: the authors' test."""
        return ((x_win + new).clamp(0, 1) - cur_win).abs().lt(SAME_TOL).flatten(1).all(1)

    @torch.no_grad()
    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        eps, dev = self.eps, x.device
        adv = (x + eps * self._signs(b, c, 1, w).to(dev)).clamp(0, 1)  # (B, C, H, W) stripes
        m = margin(self.logits(adv), y)
        used = torch.ones(b, dtype=torch.long, device=dev)
        first = torch.full((b,), -1, dtype=torch.long, device=dev)
        first[m < 0] = 1
        clean_wrong = margin(self.model(x), y) < 0  # not counted: the clean label check
        first[clean_wrong] = 0
        for it in range(1, self.n_queries):
            active = (m >= 0).nonzero().squeeze(1)
            if len(active) == 0:
                break
            # The same numbers are drawn every iteration, whatever the data (all B rows, used or not).
            corner = self._rand(2).tolist()
            signs = self._signs(b, c).to(dev)
            flips = self._flip_masks(b, c).to(dev)
            s = max(1, min(h - 1, int(round(math.sqrt(p_schedule(self.p_init, it - 1, self.n_queries) * h * w)))))
            r, col = int(corner[0] * (h - s)), int(corner[1] * (w - s))
            xa, cur = x[active], adv[active]
            x_win, cur_win = xa[:, :, r:r + s, col:col + s], cur[:, :, r:r + s, col:col + s]
            new = eps * signs[active][:, :, None, None]  # (n, C, 1, 1)
            if self.resample:
                redraw = self._unchanged(x_win, cur_win, new)[:, None, None, None]
                new = torch.where(redraw & flips[active][:, :, None, None], -new, new)
            cand = cur.clone()
            cand[:, :, r:r + s, col:col + s] = (x_win + new).clamp(0, 1)
            m_new = margin(self.logits(cand), y[active])
            used[active] += 1
            keep = m_new < m[active]
            adv[active[keep]] = cand[keep]
            m[active] = torch.minimum(m[active], m_new)
            newly = (m_new < 0) & (first[active] < 0)
            first[active[newly]] = used[active[newly]]
        self.queries_to_success = first.cpu()
        return adv
