"""Randomized smoothing (advgen.defenses.smoothing): CERTIFY and PREDICT against closed forms,
reproducibility, the certificate-vs-attack check, and the EOT attack on the smoothed classifier."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn

from advgen import headline as hl
from advgen.defenses import headline as defenses_headline
from advgen.defenses import smoothing as S
from advgen.defenses.params import CertifyConfig
from advgen.io import dumps
from advgen.models import build_model
from advgen.utils import round_floats


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny; on a shared 2-core machine two OpenMP threads spin against other
    processes and run 10-50x slower than one. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Constant(nn.Module):
    """Always class ``c`` of ``k``."""

    def __init__(self, c: int = 2, k: int = 4):
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x):
        z = torch.zeros(len(x), self.k)
        z[:, self.c] = 1.0
        return z


class Coin(nn.Module):
    """Class 0 or 1 by the sign of pixel 0 minus 1/2: a fair coin under noise when that pixel is 1/2."""

    def forward(self, x):
        s = x.flatten(1)[:, 0] - 0.5
        return torch.stack([s, -s], 1)


class Linear(nn.Module):
    """f(x) = class 0 if w.x + b > 0 else class 1."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([z, -z], 1)


def linear_case(t: list[float]):
    """A linear model on (1, 4, 4) images and images at signed distance t from its boundary."""
    w = torch.tensor([1.0, -1.0] * 8) * torch.linspace(0.5, 1.5, 16)
    b = -0.5 * float(w.sum())  # the boundary passes through the all-1/2 image
    u = w / w.norm()
    x = (0.5 + torch.tensor(t)[:, None] * u[None]).view(-1, 1, 4, 4)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    y = (torch.tensor(t) < 0).long()  # class 0 on the positive side
    return Linear(w, b), x, y


@pytest.fixture(scope="module")
def digits_mlp():
    """A small MLP trained on 8x8 digits with Gaussian noise (sigma 0.25): the base classifier of
    a smoothed classifier. (model, x_test (60, 1, 8, 8), y_test (60,))."""
    from advgen.data import load_digits_splits

    s = load_digits_splits()
    x = torch.from_numpy(s["train"][0]).float() / 255
    y = torch.from_numpy(s["train"][1]).long()
    g = gen(0)
    model = build_model("mlp", (1, 8, 8), 10, generator=g, hidden=48)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = F.cross_entropy(model(x + 0.25 * torch.randn(x.shape, generator=g)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.sidecar = {"num_classes": 10, "defense": {"method": "gaussian", "sigma": 0.25, "base": "mlp"}}
    xt = torch.from_numpy(s["test"][0]).float() / 255
    yt = torch.from_numpy(s["test"][1]).long()
    return model, xt[:60], yt[:60]


# ----------------------------------------------------------------------------- CERTIFY and PREDICT


def test_certify_and_predict_abstain_on_a_coin_flip():
    x = torch.rand(6, 1, 4, 4)
    x.view(6, -1)[:, 0] = 0.5
    pred, radius, p_lower = S.certify(Coin(), x, 0.25, 20, 400, 0.001, gen())
    assert pred.tolist() == [-1] * 6
    assert radius.tolist() == [0.0] * 6
    assert float(p_lower.max()) < 0.5
    assert S.predict(Coin(), x, 0.25, 400, 0.001, gen()).tolist() == [-1] * 6


def test_certify_constant_model_gives_the_clopper_pearson_radius_at_k_equal_n():
    n, alpha, sigma = 100, 0.001, 0.25
    pred, radius, p_lower = S.certify(Constant(2), torch.rand(5, 1, 4, 4), sigma, 10, n, alpha, gen())
    p = alpha ** (1 / n)  # beta.ppf(alpha, n, 1)
    assert pred.tolist() == [2] * 5
    assert torch.allclose(p_lower, torch.full((5,), p, dtype=torch.float64), rtol=1e-9, atol=0)
    assert torch.allclose(radius, torch.full((5,), sigma * norm.ppf(p), dtype=torch.float64), rtol=1e-9, atol=0)
    assert S.lower_confidence_bound(0, n, alpha) == 0.0


def test_certified_radius_of_a_linear_model_is_below_the_exact_one_and_close():
    # g's exact radius at x is sigma * Phi^-1(Phi(|w.x + b| / (sigma ||w||))) = |w.x + b| / ||w|| = |t|
    sigma = 0.25
    t = [0.3 * sigma, -0.6 * sigma, 1.0 * sigma, -1.5 * sigma, 2.0 * sigma, -2.5 * sigma]
    model, x, y = linear_case(t)
    pred, radius, _ = S.certify(model, x, sigma, 100, 20000, 0.001, gen(), batch_size=20000)
    exact = torch.tensor(t, dtype=torch.float64).abs()
    assert pred.tolist() == y.tolist()
    assert bool((radius < exact).all()), (radius, exact)
    assert float((exact - radius).max()) < 0.15 * sigma, (radius, exact)


def test_predict_on_clear_cases():
    model, x, y = linear_case([0.5, -0.5, 0.4, -0.45])  # 2 sigma and more from the boundary
    assert S.predict(model, x, 0.25, 200, 0.001, gen()).tolist() == y.tolist()
    assert S.predict(Constant(3, 5), torch.rand(4, 1, 4, 4), 0.5, 50, 0.001, gen()).tolist() == [3] * 4
    # at the boundary the classes are a coin flip: abstain
    model, x, _ = linear_case([0.0, 0.0, 0.0])
    assert S.predict(model, x, 0.25, 200, 0.001, gen()).tolist() == [-1] * 3


def test_noise_is_not_clipped_to_the_unit_interval():
    class AnyNegative(nn.Module):
        def forward(self, x):
            neg = (x.flatten(1) < 0).any(1).float()
            return torch.stack([1 - neg, neg], 1)

    counts = S.sample_counts(AnyNegative(), torch.zeros(3, 1, 4, 4), 0.25, 20, gen())
    assert counts.tolist() == [[0, 20]] * 3


def test_same_seed_same_results_and_noise_independent_of_batch_size():
    model = build_model("mlp", (1, 8, 8), 10, generator=gen(1), hidden=16).eval()
    x = torch.rand(7, 1, 8, 8, generator=gen(2))
    c1 = S.sample_counts(model, x, 0.5, 30, gen(3), batch_size=30)
    assert torch.equal(c1, S.sample_counts(model, x, 0.5, 30, gen(3), batch_size=30))
    assert torch.equal(c1, S.sample_counts(model, x, 0.5, 30, gen(3), batch_size=200))  # 6 images a pass
    assert not torch.equal(c1, S.sample_counts(model, x, 0.5, 30, gen(4), batch_size=30))
    assert c1.sum(1).tolist() == [30] * 7
    a, b = (S.certify(model, x, 0.5, 10, 50, 0.01, gen(5)) for _ in range(2))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    soft = [S.SmoothedSoft(model, 0.5, 4, gen(6))(x) for _ in range(2)]
    assert torch.equal(*soft)


# ----------------------------------------------------------------------------- certified accuracy, the check


def test_certified_accuracy_counts_correct_and_radius_at_least_r():
    pred = torch.tensor([0, 1, -1, 2, 2])
    radius = torch.tensor([0.5, 0.25, 0.0, 1.0, 0.1], dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 2])
    acc = S.certified_accuracy(pred, radius, y, [0.0, 0.25, 0.5])
    assert [acc[k]["accuracy"] for k in ("0", "0.25", "0.5")] == [3 / 5, 2 / 5, 1 / 5]
    lo, hi = acc["0.25"]["ci95"]
    assert lo < 0.4 < hi and acc["0.25"]["n"] == 5


def test_certificate_check_flags_a_contradiction_and_passes_consistent_data():
    cert = torch.zeros(100, dtype=torch.bool)
    cert[:40] = True
    broken = S.certificate_check(cert, torch.zeros(100, dtype=torch.bool), r=0.5)
    assert not broken["passed"] and broken["contradictions"] == 40 and broken["name"] == "certified_le_empirical@0.5"
    emp = torch.zeros(100, dtype=torch.bool)
    emp[:70] = True
    ok = S.certificate_check(cert, emp, r=0.5)
    assert ok["passed"] and ok["contradictions"] == 0
    emp[:2] = False  # two chance contradictions among many images robust but not certified
    few = S.certificate_check(cert, emp, (torch.arange(100) == 0) | (torch.arange(100) == 90))  # 90: not certified
    assert few["passed"] and few["contradictions"] == 2 and few["abstained"] == 1
    assert "(1 by abstention, 1 into a wrong class)" in few["detail"]
    # an abstention on the attacked image counts as broken, like a wrong class
    abstained = S.certificate_check(cert, torch.zeros(100, dtype=torch.bool), torch.ones(100, dtype=torch.bool))
    assert not abstained["passed"] and abstained["abstained"] == 40


def test_sigma_of_reads_the_sidecar_and_names_the_model():
    model = Constant()
    model.sidecar = {"defense": {"method": "gaussian", "sigma": 0.5, "base": "cnn"}}
    assert S.sigma_of(model, "m") == 0.5
    model.sidecar = {"defense": {"method": "pgd", "eps": 0.1}}
    with pytest.raises(ValueError, match="cnn_pgd"):
        S.sigma_of(model, "cnn_pgd")
    with pytest.raises(ValueError, match="plain"):
        S.sigma_of(Constant(), "plain")


# ----------------------------------------------------------------------------- the attack side


def test_smoothed_soft_is_a_log_distribution_with_finite_gradients(digits_mlp):
    model, x, _ = digits_mlp
    soft = S.SmoothedSoft(model, 0.25, 8, gen())
    assert soft.sidecar["num_classes"] == 10
    xr = x[:10].clone().requires_grad_(True)
    out = soft(xr)
    assert out.shape == (10, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(10), atol=1e-5)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), xr)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_eot_pgd_l2_lowers_the_smoothed_accuracy(digits_mlp):
    model, x, y = digits_mlp
    x, y = x[:40], y[:40]
    correct = S.empirical_l2(model, x, y, 0.25, [0.0, 1.0], steps=10, eot=8, n_predict=50, alpha=0.01,
                             generator=gen())
    assert correct.shape == (2, 40) and correct.dtype == torch.bool
    clean, attacked = correct.float().mean(1).tolist()
    assert clean >= 0.85
    assert attacked <= clean - 0.4, (clean, attacked)
    # eps = 0 is PREDICT on the clean images
    assert torch.equal(correct[0], S.predict(model, x, 0.25, 50, 0.01, gen()) == y)


def test_evaluate_smoothing_metrics_headline_curve_and_determinism(digits_mlp):
    model, x, y = digits_mlp
    x, y = x[:30], y[:30]
    cfg = CertifyConfig(models=["m"], n0=10, n=100, alpha=0.01, radii=[0.25, 0.5], pgd_steps=3, eot=2,
                        n_predict=20, batch_size=500, n_eval=30)
    m = S.evaluate_smoothing(model, x, y, 0.25, cfg, gen())
    assert set(m["certified_accuracy"]) == {"0", "0.25", "0.5"}
    assert set(m["empirical_accuracy"]) == {"0", "0.25", "0.5"}
    cert = m["certified_accuracy"]
    assert cert["0"] >= cert["0.25"] >= cert["0.5"]
    assert cert["0"] + m["abstain_rate"] + m["wrong_rate"] == pytest.approx(1.0)
    assert m["max_certifiable_radius"] == pytest.approx(0.25 * norm.ppf(0.01 ** (1 / 100)))
    assert [c["name"] for c in m["checks"]] == ["certified_le_empirical@0.25", "certified_le_empirical@0.5"]
    assert m["checks_failed"] == 0 and m["checks_passed"] == 2
    radii = [row["radius"] for row in m["curve"]]
    assert radii[0] == 0.0 and radii[-1] == 1.25 and len(radii) == 26
    rows = {row["radius"]: row for row in m["curve"]}
    assert rows[0.5]["certified"] == cert["0.5"] and rows[0.5]["empirical"] == m["empirical_accuracy"]["0.5"]
    assert rows[0.05]["empirical"] is None
    h = defenses_headline.certify(m)
    assert hl.check(h) <= 12 and h["certified"]["r=0.25"] == cert["0.25"] and h["checks_failed"] == 0
    again = S.evaluate_smoothing(model, x, y, 0.25, cfg, gen())
    assert dumps(round_floats(m)) == dumps(round_floats(again))  # byte-identical, valid JSON (no NaN)
