"""End to end: `dvc repro` on the smoke profile in a scratch git repo.

Checks the outputs, that a second repro is a no-op (only the always-run params validation
runs), that a forced rerun is byte-identical (determinism), that changing one param reruns only
the stages that depend on it, that a typo in params.yaml fails the run, that only the active
profile is tracked, and the recovery after a failed ingest.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from advgen.cli import copy_repo, set_profile, venv_env
from advgen.models import load_model
from tests.conftest import FMNIST_LOCAL, ROOT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not FMNIST_LOCAL.is_dir(), reason="needs the Debian package dataset-fashion-mnist")]


VALIDATE = "validate"  # the always-run params check: it runs on every repro and changes nothing


def dvc(repo: Path, *args: str, ok: bool = True) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=venv_env(), capture_output=True,
                          text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout
    assert proc.returncode != 0, f"dvc {' '.join(args)} should have failed:\n{proc.stdout[-3000:]}"
    return proc.stdout + proc.stderr


def stale(repo: Path) -> set[str]:
    """Stages `dvc repro` would rerun: those `dvc status` reports as changed, besides the
    always-run validation, once validation has rewritten each stage's params file (until it
    runs, a params edit shows on `validate` alone)."""
    subprocess.run([sys.executable, "stages/validate.py"], cwd=repo, env=venv_env(), capture_output=True, timeout=120)
    return set(json.loads(dvc(repo, "status", "--json"))) - {VALIDATE}


def edit_params(repo: Path, old: str, new: str) -> None:
    params = repo / "params.yaml"
    text = params.read_text()
    assert text.count(old) == 1, old
    params.write_text(text.replace(old, new))


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline")
    copy_repo(ROOT, path)
    set_profile(path, "smoke")
    out = dvc(path, "repro")
    assert {VALIDATE, "ingest", "train@cnn", "report"} <= ran(out)
    return path


def test_outputs(repo: Path):
    manifest = json.loads((repo / "data/prepared/fashion-mnist/manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 60000
    assert not any("url" in f for f in manifest["files"].values())  # provenance lives in reports/ingest
    provenance = json.loads((repo / "reports/ingest/provenance.json").read_text())
    assert all(u.startswith("file:///usr/share/datasets/fashion-mnist/") for u in provenance["urls"].values())
    claims = json.loads((repo / "reports/claims.json").read_text())
    ids = [f"C{i}" for i in range(1, 19)]
    assert [c["id"] for c in claims] == [*ids[:9], "C9a", "C9b", ids[9], "C10a", *ids[10:]]

    for name in ("logreg", "mlp", "cnn", "resnet"):
        model = load_model(repo / "models" / name)
        assert model.sidecar["profile"] == "smoke"
        cost = json.loads((repo / f"reports/cost/train/{name}.json").read_text())
        assert cost["wall_s"] > 0 and cost["peak_rss_mb"] > 0
        train = json.loads((repo / f"reports/train/{name}/metrics.json").read_text())
        lo, hi = train["test_accuracy_ci95"]
        assert train["n_test"] == 500 and lo < train["test_accuracy"] < hi and hi - lo < 0.1
    # 1 epoch (16 steps) on 2,000 images: the smoke run measures 60.4% for the cnn, 10% chance
    assert 0.55 < json.loads((repo / "reports/headline/train/cnn.json").read_text())["test_accuracy"] < 0.7
    _headline_metrics_are_small(repo)
    report = json.loads((repo / "reports/headline/report.json").read_text())
    assert sum(report[f"claims_{v}"] for v in ("supported", "not_supported", "not_measured")) == 21
    assert report["verdict_C3"] == "supported"
    assert (repo / "reports/figures/worst_case.png").read_bytes()[:4] == b"\x89PNG"
    summary = (repo / "reports/summary.md").read_text()
    assert "## Claims" in summary and "| C3 |" in summary and "## Sanity checks" in summary
    assert "worst case (cascade)" in summary
    for name in ("logreg", "cnn", "resnet"):
        rob = json.loads((repo / f"reports/robustness/{name}/metrics.json").read_text())
        checks = {c["name"]: c["passed"] for c in rob["checks"]}
        assert checks["unbounded_pgd_reaches_zero"] and checks["logits_deterministic"]
        assert not any(c.startswith(("eps0_equals_clean", "robust_le_clean[worst_case]")) for c in checks)
        assert [c["eps"] for c in rob["cascade"]] == [0.025, 0.05, 0.1, 0.15, 0.2]
        worst = rob["linf"]["worst_case"]
        for attack in ("fgsm", "pgd"):
            assert all(worst[e] <= rob["linf"][attack][e] for e in worst)
        for attack in ("fgsm", "pgd", "apgd_ce", "pgd_l2", "square", "noise"):
            res = json.loads((repo / f"reports/attacks/{name}/{attack}.json").read_text())
            assert res["within_eps"], (name, attack)
            assert (repo / f"reports/attacks/{name}/{attack}.png").read_bytes()[:4] == b"\x89PNG"
    _claims_follow_their_criteria(repo, {c["id"]: c["verdict"] for c in claims})
    transfer = json.loads((repo / "reports/transfer/metrics.json").read_text())
    assert set(transfer["matrix"]) == set(transfer["clean"]) == {"logreg", "mlp", "cnn", "cnn_seed1", "resnet"}
    plots = json.loads(dvc(repo, "plots", "show", "--json"))
    assert not plots.get("errors"), plots.get("errors")
    titles = list(plots["data"])
    assert any(t.startswith("Robust accuracy against L-inf eps") for t in titles)
    facet = next(v for t, v in plots["data"].items() if t.startswith("Robust accuracy"))[0]["content"]
    lines = {(r["model"], r["attack"]) for r in facet["data"]["values"]}
    assert lines == {(m, a) for m in ("logreg", "cnn", "resnet", *DEFENDED)
                     for a in ("fgsm", "pgd", "apgd_ce", "noise", "worst_case")}
    training = next(v for t, v in plots["data"].items() if t.startswith("Training curves"))[0]["content"]
    assert {r["model"] for r in training["data"]["values"]} == {"logreg", "mlp", "cnn", "resnet", "cnn_seed1",
                                                               "logreg_r7", "logreg_r14", *DEFENDED, *POISONED,
                                                               "cnn_5ep"}
    monitor = next(v for t, v in plots["data"].items() if t.startswith("Catastrophic"))[0]["content"]
    assert {r["model"] for r in monitor["data"]["values"]} == set(DEFENDED) - {"cnn_gaussian"}
    _defense_outputs(repo, summary)
    _backdoor_outputs(repo, summary, titles)
    _scrape_outputs(repo, summary)
    _generative_outputs(repo, summary, titles)
    _replicate_outputs(repo, summary, {c["id"]: c for c in claims})


def _replicate_outputs(repo: Path, summary: str, claims: dict[str, dict]) -> None:
    """Each seed of replicate.seeds trains its own models (different weights per seed), and C9's
    and C10's rows show the per-seed figures; no other claim is replicated."""
    weights = {}
    for s in (0, 1, 2):
        for name in ("cnn", "cnn_fgsm_at"):
            m = load_model(repo / f"models/replicate/c9/{s}/{name}")
            assert m.sidecar["seed"] == s and m.sidecar["profile"] == "smoke"
            weights[(s, name)] = (repo / f"models/replicate/c9/{s}/{name}/model.safetensors").read_bytes()
        c9 = json.loads((repo / f"reports/replicate/c9/{s}/metrics.json").read_text())
        assert c9["seed"] == s and c9["n"] == 16 and c9["eps"] == 0.1  # the defended eval size, the training eps
        assert [r["stage"] for r in c9["cascade"]["stages"]] == ["clean", "fgsm", "pgd", "apgd_ce", "apgd_t", "square"]
        assert c9["cascade"]["robust"]["accuracy"] == c9["defended_worst_case"]
        c10 = json.loads((repo / f"reports/replicate/c10/{s}/metrics.json").read_text())
        assert c10["reference"] == "cnn_5ep" and c10["n_eval"] == 200
        for name in ("cnn_5ep", "badnets_src", "badnets_10"):
            assert load_model(repo / f"models/replicate/c10/{s}/{name}").sidecar["seed"] == s
    assert len(set(weights.values())) == len(weights)
    # seed 0 is the top-level seed: its replicates follow the train, defend and poison stages' recipes
    # bit for bit (same machine), so they are the main run's models
    from safetensors.torch import load_file
    for main, rep in (("cnn", "c9/0/cnn"), ("cnn_fgsm_at", "c9/0/cnn_fgsm_at"), ("cnn_5ep", "c10/0/cnn_5ep"),
                      ("badnets_src", "c10/0/badnets_src"), ("badnets_10", "c10/0/badnets_10")):
        a = load_file(str(repo / "models" / main / "model.safetensors"))
        b = load_file(str(repo / "models/replicate" / rep / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (main, rep)
    for cid in ("C9", "C10"):
        assert claims[cid]["seeds"].startswith("seeds 0 / 1 / 2: ") and "criterion holds on" in claims[cid]["seeds"]
    assert not any(c["seeds"] for cid, c in claims.items() if cid not in ("C9", "C10"))
    assert "## Verdicts over seeds (C9, C10)" in summary


def _scrape_outputs(repo: Path, summary: str) -> None:
    """The index covers the smoke subset; each purchase x policy set loads like an ingested one;
    pinning lets no poisoned image in; the split_view stage scores a cnn on each."""
    from advgen.data import load_split
    from advgen.scrape.index import read_index

    index = read_index(repo / "data/index/index.parquet")
    assert len(index) == 2000 and len(set(index.url)) == 2000
    names = [f"{p}_{pol}" for p in ("p001", "p01", "p1") for pol in ("none", "sha256", "phash")]
    for name in names:
        stats = json.loads((repo / f"reports/scrape/{name}/stats.json").read_text())
        x, y = load_split(repo / "data/scraped" / name, "train")
        assert len(y) == stats["n_kept"] == stats["status"]["ok"] and sum(stats["status"].values()) == 2000
        assert stats["poison_entered"] == (stats["n_bought"] if stats["policy"] == "none" else 0)
        rows = (repo / "data/scraped" / name / "status.tsv").read_text().splitlines()
        assert len(rows) == 1 + 2000 - stats["n_kept"]
    assert json.loads((repo / "reports/scrape/p1_none/stats.json").read_text())["n_bought"] == 20  # 1% of 2,000
    sv = json.loads((repo / "reports/split_view/metrics.json").read_text())
    assert sorted(sv["sets"]) == sorted(names) and sv["n_test"] == 500 and sv["clean"]["n_kept"] == 2000
    assert all(0 <= s["asr"]["value"] <= 1 and s["asr"]["n"] == sv["n_triggered"] for s in sv["sets"].values())
    assert "## Scraping and split-view poisoning (C10a)" in summary and "| C10a |" in summary


GANS = ("minimax", "nonsat", "nonsat_k2", "wgan_gp", "stacked")


def _generative_outputs(repo: Path, summary: str, plot_titles: list[str]) -> None:
    """Every GAN config leaves a loadable generator, its curves and grids; every one is scored
    under the feature network it was trained with; the report has its sections and plots."""
    from advgen.generative.models import load_generator
    ev = json.loads((repo / "reports/generative/metrics.json").read_text())
    cnn_sha = json.loads((repo / "models/cnn/model.json").read_text())["weights_sha256"]
    assert ev["feature_sha256"] == cnn_sha and ev["n"] == 200
    assert sorted(ev["models"]) == sorted(GANS + DIFFUSIONS + tuple(f"{n}_uncond" for n in DIFFUSIONS))
    mem = ev["memorisation"]
    assert mem["n_reference"] == 2000 and mem["n_threshold"] == mem["n_real"] == 1000 and mem["threshold"] > 0
    assert ev["floor"]["memorised"] == mem["real_share"] and all(0 <= r["memorised"] <= 1 for r in ev["models"].values())
    assert ev["inception"]["fid"] == "not available offline"
    for name in GANS:
        assert ev["models"][name]["kind"] == "gan"
        g = load_generator(repo / "models/gan" / name)
        assert g.sidecar["feature_sha256"] == cnn_sha and g.channels == (3 if name == "stacked" else 1)
        m = json.loads((repo / f"reports/gan/{name}/metrics.json").read_text())
        # the budget is G updates: D takes d_steps before each (640 images = 10 batches per epoch)
        assert m["g_iters"] == 10 and m["d_iters"] == 10 * m["d_steps"] and m["epochs"] == m["d_steps"]
        assert [p["g_iter"] for p in m["fid_curve"]] == [5, 10] and m["stopped_by"] == "budget"
        assert all(p["fid_lo"] <= p["fid"] <= p["fid_hi"] for p in m["fid_curve"])
        assert m["d_norm"] == ("none" if name == "wgan_gp" else "batch")
        assert (repo / f"reports/gan/{name}/samples/g000010.png").read_bytes()[:4] == b"\x89PNG"
        assert (repo / f"reports/gan/{name}/probe.tsv").is_file() == (name != "wgan_gp")
        r = ev["models"][name]
        lo, hi = r["fid_ci95"]
        assert lo <= r["fid"] <= hi and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
        assert ("stacked" in r) == (name == "stacked") and ("codes" in r) == (name != "stacked")
        assert ("gradient_trace" in r) == (name != "wgan_gp")
    floor = ev["floor"]
    assert floor["fid"] < min(r["fid"] for r in ev["models"].values())  # 10 GAN or diffusion steps are far from real images
    assert floor["coverage"]["classes_covered"] == 10 and floor["stacked"]["n"] == 500
    for title in ("## GANs (C11, C12)", "## Generative evaluation", "## Mode collapse (C13)"):
        assert title in summary, title
    for fig in ("gan_fid", "gan_d_fake", "gan_saturation", "gan_probe"):
        assert (repo / f"reports/figures/{fig}.png").read_bytes()[:4] == b"\x89PNG"
    assert sum(t.startswith("GAN") for t in plot_titles) == 4
    _diffusion_outputs(repo, ev, summary, plot_titles)


DIFFUSIONS = ("linear", "cosine", "latent")


def _diffusion_outputs(repo: Path, ev: dict, summary: str, plot_titles: list[str]) -> None:
    """Every diffusion config leaves a loadable denoiser, its sample sets (scored by
    evaluate_generative at their sizes), grids and the denoising strip; the autoencoder its
    weights and reconstructions; the report its sections and plots."""
    from advgen.generative.autoencoder import Autoencoder
    from advgen.generative.store import load_module, load_samples
    from advgen.generative.unet import UNet

    ae = load_module(repo / "models/autoencoder", "autoencoder", "autoencoder",
                     lambda kw: Autoencoder(tuple(kw["latent"]), kw["width"]))
    assert ae.latent == (4, 7, 7) and (ae.scale > 0).all() and ae.scale.shape == ae.shift.shape == (4,)
    am = json.loads((repo / "reports/autoencoder/metrics.json").read_text())
    assert 0 < am["test_mse"] < 0.2 and am["latent_numbers"] == 196 and am["n_train"] == 640
    assert ev["autoencoder"]["n"] == 32 and ev["autoencoder"]["fid_ci95"][0] <= ev["autoencoder"]["fid"]
    expect_sets = {"linear": 1 + 1 + 1 + 3 + 4, "cosine": 2, "latent": 2}  # main, null label, snapshot, sweep, guidance
    for name in DIFFUSIONS:
        net = load_module(repo / "models/diffusion" / name, "denoiser", "diffusion",
                          lambda kw: UNet(kw["channels"], kw["base"], tuple(kw["mults"]), kw["num_classes"]))
        assert net.sidecar["T"] == 20 and net.sidecar["space"] == ("latent" if name == "latent" else "pixel")
        m = json.loads((repo / f"reports/diffusion/{name}/metrics.json").read_text())
        epochs = 3 if name == "latent" else 1  # latent: epoch_factor 3
        assert m["iters"] == 10 * epochs and m["epochs"] == m["epochs_run"] == epochs and m["loss_final"] > 0
        assert [p["epoch"] for p in m["fid_curve"]] == list(range(1, epochs + 1)) and m["stopped_by"] == "budget"
        sets = load_samples(repo / "models/diffusion" / name)
        assert len(sets) == expect_sets[name]
        assert set(ev["diffusion"][name]) == set(sets) - {"ddim5_eta0", "uncond_ddim5_eta0"}
        r, u = ev["models"][name], ev["models"][f"{name}_uncond"]
        assert r["kind"] == "diffusion" and r["set"] == "ddim5_eta0" and r["n"] == 32 and r["mode"] == "conditional"
        assert u["set"] == "uncond_ddim5_eta0" and u["mode"] == "unconditional" and "conditional_accuracy" not in u
        assert "conditional_accuracy" in r  # the main set requested balanced classes
        assert (repo / f"reports/diffusion/{name}/trajectory.png").read_bytes()[:4] == b"\x89PNG"
        cost = json.loads((repo / f"reports/cost/diffusion/{name}.json").read_text())
        assert set(cost["sampling_seconds_per_1000"]) == set(sets) and len(cost["train_seconds_per_epoch"]) == epochs
    lin = ev["diffusion"]["linear"]
    assert lin["sweep_ddpm20"]["n"] == 16 and lin["guidance_s3"]["n"] == 20 and lin["snapshot_ddim5_eta0"]["n"] == 32
    assert [lin[f"guidance_s{s}"]["scale"] for s in (0, 1, 3, 5)] == [0, 1, 3, 5]
    assert all("conditional_accuracy" in lin[f"guidance_s{s}"] for s in (0, 1, 3, 5))
    assert (repo / "reports/diffusion/linear/guidance_s3.png").read_bytes()[:4] == b"\x89PNG"
    for title in ("## Diffusion models (C15–C18)", "## Samplers: DDPM against DDIM (C16)",
                  "## Latent against pixel diffusion (C17)", "## Classifier-free guidance (C18)",
                  "## Diffusion against the GANs (C15)"):
        assert title in summary, title
    for fig in ("diffusion_samplers", "diffusion_guidance", "diffusion_fid"):
        assert (repo / f"reports/figures/{fig}.png").read_bytes()[:4] == b"\x89PNG"
    assert sum(t.startswith(("Diffusion", "Classifier-free")) for t in plot_titles) == 4


POISONED = ("badnets_05", "badnets_1", "badnets_5", "badnets_10", "badnets_src", "blended_1", "blended_5", "clean_label")


def _backdoor_outputs(repo: Path, summary: str, plot_titles: list[str]) -> None:
    """Poisoned datasets load like ingested ones, differ from the clean subset exactly where the
    index says; poisoned models are ordinary models; every one is scored."""
    from advgen.data import load_split
    for name in POISONED:
        folder = repo / "data/poisoned" / name
        assert sorted(f.name for f in folder.iterdir()) == ["manifest.json", "test.safetensors", "train.safetensors"]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["parent"]["manifest_sha256"] and manifest["poisoning"]["name"] == name
        index = json.loads((repo / "data/backdoor" / name / "poison_index.json").read_text())
        x, y = load_split(folder, "train")
        assert len(y) == index["n_train"] == 2000 and index["n_poisoned"] == manifest["poisoning"]["n_poisoned"] > 0
        assert (y[index["indices"]] == torch.tensor(index["labels"])).all()
        model = load_model(repo / "models" / name)
        assert model.sidecar["data"] == f"poisoned/{name}" and model.sidecar["config"]["epochs"] == 1
        m = json.loads((repo / f"reports/backdoor/{name}/metrics.json").read_text())
        assert m["n_poisoned_in_train"] == index["n_poisoned"] and m["n_eval"] == 200
        assert set(m["defenses"]) == set(PARAMS_DEFENSES.get(name, ()))
        for d in m["defenses"].values():
            assert 0 <= d["der"] <= 1 and 0 <= d["asr"]["value"] <= 1
    assert load_model(repo / "models/cnn_5ep").sidecar.get("data") is None  # clean models keep their sidecar
    for title in ("## Backdoors (C10)", "## Backdoor defenses"):
        assert title in summary, title
    assert (repo / "reports/figures/backdoor_examples.png").read_bytes()[:4] == b"\x89PNG"
    assert any(t.startswith("Backdoors (C10)") for t in plot_titles)


PARAMS_DEFENSES = {n: ("spectral", "clustering", "strip", "fine_pruning", "fine_tuning")
                   for n in ("badnets_1", "badnets_10", "badnets_src", "blended_5", "clean_label")}
DEFENDED = ("cnn_augment", "cnn_fgsm_at", "cnn_fast_at", "cnn_pgd_at", "cnn_trades", "cnn_gaussian")


def _defense_outputs(repo: Path, summary: str) -> None:
    """Defended models are ordinary models: loadable, attacked and checked like the others."""
    for name in DEFENDED:
        model = load_model(repo / "models" / name)
        assert model.sidecar["defense"]["base"] == "cnn" and model.sidecar["config"]["n_train"] == 512
        metrics = json.loads((repo / f"reports/defend/{name}/metrics.json").read_text())
        # per-example gradients of one epoch on 512 images: updates + inner-attack input gradients
        per_image = {"augment": 2, "fgsm": 3, "fgsm_rs": 2, "pgd": 8, "trades": 9, "gaussian": 1}
        extra = 512 if model.sidecar["defense"]["method"] == "augment" else 0  # augment crafts once
        assert metrics["training_grad_evals"] == per_image[model.sidecar["defense"]["method"]] * 512 + extra
        assert metrics["epochs_run"] == 1
        rob = json.loads((repo / f"reports/robustness/{name}/metrics.json").read_text())
        assert rob["n"] == 16 and [c["eps"] for c in rob["cascade"]] == [0.05, 0.1]
        assert rob["vs_base"]["base"] == "cnn" and set(rob["vs_base"]["eps"]) == {"0", "0.05", "0.1"}
        assert {"unbounded_pgd_reaches_zero", "black_box_not_stronger@0.1"} <= {c["name"] for c in rob["checks"]}
        square = json.loads((repo / f"reports/attacks/{name}/square.json").read_text())
        assert list(square["accuracy"]) == ["0", "0.05", "0.1"] and square["n"] == 8
        head = json.loads((repo / f"reports/headline/attacks/{name}.json").read_text())
        assert set(head["pgd"]) == set(head["fgsm"]) == {"eps=0.1"} and len(head["pgd_l2"]) == 3
    sanitize = json.loads((repo / "reports/sanitize/metrics.json").read_text())
    assert sanitize["n_eval"] == 16 and sanitize["n_val"] == 64
    assert set(sanitize["preprocessing"]) == {"none", "bit_depth", "median", "both"}
    certify = json.loads((repo / "reports/certify/cnn_gaussian/metrics.json").read_text())
    assert certify["n_eval"] == 8 and set(certify["certified_accuracy"]) == {"0", "0.25", "0.5", "1"}
    _hiding_outputs(repo)
    for title in ("## Defenses (C9)", "## Feature squeezing: naive against adaptive (C9a)",
                  "## Randomized smoothing: cnn_gaussian", "## Hiding information: label-only and rounded-score APIs (C9b)"):
        assert title in summary, title


def _hiding_outputs(repo: Path) -> None:
    """The hiding stage attacks replicate_c9@0's models; each API's accuracy and paired test follow
    from its per-image breaks (recomputed here), and smoke's budgets lack C9b's 1,000."""
    m = json.loads((repo / "reports/hiding/metrics.json").read_text())
    assert (m["seed"], m["base"], m["defended"]) == (0, "cnn", "cnn_fgsm_at") and set(m["models"]) == {"cnn", "cnn_fgsm_at"}
    rows = (repo / "reports/hiding/curve.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["model", "api", "queries", "hours", "accuracy"] and len(rows) == 1 + 2 * 3 * 3
    head = json.loads((repo / "reports/headline/hiding.json").read_text())
    cost = json.loads((repo / "reports/cost/hiding.json").read_text())
    assert set(cost["attack_seconds"]) == {f"{n}/{a}" for n in m["models"] for a in (
        "scores/square", "rounded/square", "label/hopskipjump_linf", "label/hopskipjump_l2", "label/boundary")}
    assert "seconds" not in json.dumps(m)  # timings vary by run: cost record only
    for name, r in m["models"].items():
        assert r["n"] == 8 and r["budgets"] == [10, 100, 300]
        scores = r["apis"]["scores"]["broken_at"]
        for api, w in r["apis"].items():
            for b in r["budgets"]:
                kept = [f is None or f > b for f in w["broken_at"]]
                assert w["accuracy"][str(b)] == pytest.approx(sum(kept) / r["n"], abs=1e-6)
                if b in r["budgets"][-2:]:  # the headline keeps the two largest budgets
                    assert head[name][f"{api}@{b}"] == w["accuracy"][str(b)]
                if api != "scores":
                    full = [f is None or f > b for f in scores]
                    t = w["vs_scores"][str(b)]
                    assert (t["only_a"], t["only_b"]) == (sum(k and not f for k, f in zip(kept, full)),
                                                          sum(f and not k for k, f in zip(kept, full)))
            assert w["accuracy"][str(r["budgets"][0])] <= r["clean_accuracy"]
        # full scores' worst case includes the label attack: never above the label API's
        assert all(r["apis"]["scores"]["accuracy"][b] <= r["apis"]["label"]["accuracy"][b] for b in r["apis"]["label"]["accuracy"])
    claim = next(c for c in json.loads((repo / "reports/claims.json").read_text()) if c["id"] == "C9b")
    assert claim["verdict"] == "not_measured" and "1000 and 10000 in hiding.budgets" in claim["measured"]


def _headline_metrics_are_small(repo: Path) -> None:
    """Every DVC metric is a scalar, there are at most ~250 of them for the core stages (plus
    what the defenses add: ~50 of their own and ~17 per defended model), and no timings."""
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    files = next(iter(shown.values()))["data"]
    values = [v for f in files.values() for v in _leaves(f["data"])]
    assert 150 <= len(values) <= 250 + 4 * 50 + 17 * (len(DEFENDED) + len(POISONED) + 1) and all(isinstance(v, (int, float, str, bool)) for v in values), len(values)
    assert all(path.startswith("reports/headline/") for path in files)
    assert not any("wall" in k or "cpu_s" in k for f in files.values() for k in _keys(f["data"]))


def _leaves(obj):
    return [v for x in obj.values() for v in _leaves(x)] if isinstance(obj, dict) else [obj]


def _keys(obj):
    return [k for k, v in obj.items() for k in [k, *(_keys(v) if isinstance(v, dict) else [])]]


def _seed_rule(figures: list[tuple[list[float], float, bool]], per_seed: list[bool]) -> bool:
    """advgen.claims.SEED_RULE recomputed with numpy: every figure's 95% t-interval of the mean on
    its passing side (>= threshold when the bool is True), and the per-seed criterion on >= 2 of 3."""
    from scipy.stats import t

    ok = sum(per_seed) >= 2
    for values, threshold, higher in figures:
        v = np.asarray(values, dtype=float)
        half = t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        ok &= bool(v.mean() - half >= threshold) if higher else bool(v.mean() + half <= threshold)
    return ok


def _claims_follow_their_criteria(repo: Path, verdicts: dict[str, str]) -> None:
    """Recompute the smoke run's verdicts from the stage metrics with each criterion's arithmetic."""
    assert verdicts["C3"] == "supported"
    rob = json.loads((repo / "reports/robustness/cnn/metrics.json").read_text())
    test = rob["paired"]["vs_clean"]["fgsm"]["0.05"]
    c5 = rob["clean_accuracy"] - rob["linf"]["fgsm"]["0.05"] >= 0.2 and test["p_a_higher"] < 0.01
    assert verdicts["C5"] == ("supported" if c5 else "not_supported")
    tr = json.loads((repo / "reports/transfer/metrics.json").read_text())
    sources = {s: r["cnn"] for s, r in tr["matrix"].items() if s != "cnn"}
    best = min(sources, key=sources.get)
    drop, noise_drop = tr["clean"]["cnn"] - sources[best], tr["clean"]["cnn"] - rob["linf"]["noise"]["0.1"]
    c6 = drop >= 0.2 and drop >= 3 * noise_drop and rob["paired"]["transfer_vs_noise"][best]["p_a_higher"] < 0.01
    assert verdicts["C6"] == ("supported" if c6 else "not_supported")
    sq = json.loads((repo / "reports/attacks/cnn/square.json").read_text())["square"]
    succ = sq["success_at_budget"]
    c7 = succ[str(sq["window_budget"])] <= succ[str(max(map(int, succ)))] - 0.10
    assert verdicts["C7"] == ("supported" if c7 else "not_supported")
    dm = json.loads((repo / "reports/dimension/metrics.json").read_text())
    rows = sorted(dm["models"].values(), key=lambda r: r["dim"])
    c4 = all(a["accuracy_drop"] < b["accuracy_drop"] and a["mean_margin_drop"] < b["mean_margin_drop"]
             for a, b in zip(rows, rows[1:]))
    assert verdicts["C4"] == ("supported" if c4 else "not_supported")
    # C9 and C10 are judged over the seeds of replicate.seeds (the seed rule, issue 23)
    c9 = [json.loads((repo / f"reports/replicate/c9/{s}/metrics.json").read_text()) for s in (0, 1, 2)]
    gains = [m["defended_worst_case"] - m["base_pgd"] for m in c9]
    assert gains == pytest.approx([m["gain"] for m in c9])
    c9_ok = _seed_rule([(gains, 0.10, True)], [g >= 0.10 and m["paired"]["p_a_higher"] < 0.01 for g, m in zip(gains, c9)])
    assert verdicts["C9"] == ("supported" if c9_ok else "not_supported")
    sz = json.loads((repo / "reports/sanitize/metrics.json").read_text())
    both, det = sz["preprocessing"]["both"], sz["detector"]["attacks"]
    tpr = det["pgd"]["detection"]["tpr"], det["detector_aware_pgd"]["detection"]["tpr"]
    c9a = (both["pgd_naive"]["accuracy"] - both["pgd_bpda"]["accuracy"] >= 0.2
           and both["pgd_naive_vs_bpda"]["p_a_higher"] < 0.01 and None not in tpr and tpr[0] - tpr[1] >= 0.2)
    assert verdicts["C9a"] == ("supported" if c9a else "not_supported")
    c10 = [json.loads((repo / f"reports/replicate/c10/{s}/metrics.json").read_text())["configs"] for s in (0, 1, 2)]
    assert all(sorted(r) == ["badnets_10", "badnets_src"] for r in c10)
    figures = [(vals, t, hi) for n in ("badnets_src", "badnets_10")
               for vals, t, hi in (([r[n]["asr"]["value"] for r in c10], 0.9, True),
                                   ([r[n]["ca_drop"]["value"] for r in c10], 0.01, False))]
    per_seed = [all(r[n]["asr"]["value"] >= 0.9 and r[n]["ca_drop"]["value"] <= 0.01 for n in r) for r in c10]
    assert verdicts["C10"] == ("supported" if _seed_rule(figures, per_seed) else "not_supported")
    ev = json.loads((repo / "reports/generative/metrics.json").read_text())["models"]
    probe = json.loads((repo / "reports/gan/minimax/metrics.json").read_text())["probe"]
    c11 = probe["ratio_end"] >= 10 and ev["nonsat"]["fid_ci95"][1] < ev["minimax"]["fid_ci95"][0]
    assert verdicts["C11"] == ("supported" if c11 else "not_supported")
    c12 = ev["nonsat_k2"]["fid_ci95"][1] < ev["nonsat"]["fid_ci95"][0]
    assert verdicts["C12"] == ("supported" if c12 else "not_supported")
    floor = json.loads((repo / "reports/generative/metrics.json").read_text())["floor"]
    c13 = any(r["precision"] >= floor["precision"] - 0.1 and (r["recall"] <= floor["recall"] - 0.2
                                                             or r["coverage"]["classes_covered"] < 10)
              for r in ev.values() if "stacked" not in r and r["kind"] == "gan")
    c13 |= ev["stacked"]["stacked"]["modes_covered"] < 0.9 * floor["stacked"]["modes_covered"]
    assert verdicts["C13"] == ("supported" if c13 else "not_supported")
    _diffusion_claims(repo, ev, verdicts)
    for cid in ("C1", "C2", "C8", "C14"):
        assert verdicts[cid] in ("supported", "not_supported"), cid


def _diffusion_claims(repo: Path, ev: dict, verdicts: dict[str, str]) -> None:
    def covers(a: dict, b: dict) -> bool:
        return (a["recall"] > b["recall"] and a["coverage"]["classes_covered"] >= b["coverage"]["classes_covered"]
                and a["coverage"]["kl_uniform"] <= b["coverage"]["kl_uniform"])
    sets = json.loads((repo / "reports/generative/metrics.json").read_text())["diffusion"]
    gans = {n: r for n, r in ev.items() if r["kind"] == "gan" and "stacked" not in r}
    diff = {n: r for n, r in ev.items() if r["kind"] == "diffusion" and r["mode"] == "unconditional"}  # as the GANs
    g, d = min(gans, key=lambda n: gans[n]["fid"]), min(diff, key=lambda n: diff[n]["fid"])
    top = max(r["recall"] for r in gans.values())
    snap_s = json.loads((repo / "reports/cost/diffusion/linear.json").read_text())["snapshot_seconds"]
    gan_s = json.loads((repo / f"reports/cost/gan/{g}.json").read_text())["wall_s"]
    c15 = (covers(diff[d], gans[g]) and diff[d]["recall"] > top and covers(sets["linear"]["snapshot_ddim5_eta0"], gans[g])
           and sets["linear"]["snapshot_ddim5_eta0"]["recall"] > top and snap_s <= gan_s)
    assert verdicts["C15"] == ("supported" if c15 else "not_supported")
    cost = {n: json.loads((repo / f"reports/cost/diffusion/{n}.json").read_text()) for n in DIFFUSIONS}
    # the smoke sweep has no DDIM-50: C16 is not measured there
    assert verdicts["C16"] == "not_measured"
    secs = {n: cost[n]["sampling_seconds_per_1000"]["ddim5_eta0"] for n in ("linear", "latent")}
    epochs = {n: cost[n]["train_seconds_per_epoch"][0] for n in ("linear", "latent")}
    c17 = (epochs["linear"] / epochs["latent"] >= 3 and secs["linear"] / secs["latent"] >= 3
           and ev["latent"]["fid"] <= 1.5 * ev["linear"]["fid"])  # the main (conditional) sets
    assert verdicts["C17"] == ("supported" if c17 else "not_supported")
    g0, g3 = sets["linear"]["guidance_s0"], sets["linear"]["guidance_s3"]
    c18 = g3["conditional_accuracy"] >= 0.9 and g3["conditional_accuracy"] - g0["conditional_accuracy"] >= 0.5
    assert verdicts["C18"] == ("supported" if c18 else "not_supported")


def test_second_repro_is_a_noop(repo: Path):
    assert json.loads(dvc(repo, "status", "--json")) == {VALIDATE: ["always changed"]}
    assert ran(dvc(repo, "repro")) == {VALIDATE}


def test_forced_rerun_is_byte_identical(repo: Path):
    files = ["reports/train/cnn/metrics.json", "reports/train/cnn/curve.tsv", "models/cnn/model.safetensors",
             "reports/robustness/cnn/linf.tsv", "reports/transfer/metrics.json", "data/transfer/correct.safetensors",
             "reports/ingest/metrics.json", "data/prepared/fashion-mnist/train.safetensors",
             "reports/attacks/cnn/pgd.json", "reports/attacks/cnn/pgd.png", "data/attacks/cnn/pgd.safetensors",
             "reports/attacks/cnn/square.json", "reports/robustness/cnn/metrics.json",
             "models/cnn_fast_at/model.safetensors", "reports/defend/cnn_fast_at/metrics.json",
             "reports/sanitize/metrics.json", "reports/sanitize/roc.tsv", "reports/certify/cnn_gaussian/metrics.json",
             "data/poisoned/clean_label/train.safetensors", "data/backdoor/clean_label/poison_index.json",
             "models/badnets_1/model.safetensors", "reports/backdoor/badnets_1/metrics.json",
             "models/gan/wgan_gp/generator.safetensors", "reports/gan/wgan_gp/log.tsv",
             "reports/gan/wgan_gp/samples/g000010.png", "reports/generative/metrics.json",
             "models/autoencoder/autoencoder.safetensors", "models/autoencoder/samples.safetensors",
             "models/diffusion/linear/denoiser.safetensors", "models/diffusion/linear/samples.safetensors",
             "reports/diffusion/linear/metrics.json", "reports/diffusion/linear/trajectory.png",
             "data/index/index.parquet", "data/scraped/p1_phash/train.safetensors", "data/scraped/p1_none/status.tsv",
             "reports/scrape/p1_sha256/stats.json", "reports/split_view/metrics.json",
             "models/split_view/p1_none/model.safetensors", "models/replicate/c9/1/cnn_fgsm_at/model.safetensors",
             "reports/replicate/c9/1/metrics.json", "reports/replicate/c10/2/metrics.json",
             "models/replicate/c10/2/badnets_src/model.safetensors", "reports/hiding/metrics.json",
             "reports/hiding/curve.tsv"]
    before = {f: (repo / f).read_bytes() for f in files}
    shutil.rmtree(repo / "data/scrape_cache")  # the forced scrape fetches every shard again from a fresh web
    for stage in ("ingest", "train@cnn", "attack@cnn", "transfer", "robustness@cnn", "defend@cnn_fast_at", "sanitize",
                  "certify@cnn_gaussian", "poison", "train@badnets_1", "backdoor_defense@badnets_1", "gan@wgan_gp",
                  "autoencoder", "diffusion@linear", "evaluate_generative", "curate", "scrape", "split_view",
                  "replicate_c9@1", "replicate_c10@2", "hiding"):
        dvc(repo, "repro", "-f", "-s", stage)
    assert {f: (repo / f).read_bytes() for f in files} == before
    # Only the cost files changed (timings vary), and no stage depends on them.
    assert ran(dvc(repo, "repro")) == {VALIDATE}


def git_commit(repo: Path, message: str) -> None:
    for args in (["add", "-A"], ["-c", "user.name=advgen test", "-c", "user.email=test@advgen", "commit", "--allow-empty", "-qm", message]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_one_param_reruns_only_its_dependents(repo: Path):
    git_commit(repo, "smoke results")  # `dvc metrics diff` compares the workspace with HEAD
    edit_params(repo, "  w_tv: 0.03125", "  w_tv: 0.0625")
    assert stale(repo) == {"patch"}
    assert ran(dvc(repo, "repro")) == {VALIDATE, "patch", "report"}
    diff = json.loads(dvc(repo, "metrics", "diff", "--json"))
    assert set(diff) <= {"reports/headline/patch.json", "reports/headline/report.json"}, set(diff)
    assert "reports/headline/patch.json" in diff

    edit_params(repo, "logreg: {arch: logreg, data: prepared}", "logreg: {arch: logreg, data: prepared, lr: 0.01}")
    assert stale(repo) == {"train@logreg"}
    rerun = ran(dvc(repo, "repro"))
    assert {"train@logreg", "attack@logreg", "robustness@logreg", "transfer", "dimension", "report"} <= rerun
    untouched = {"ingest", "train@cnn", "train@resnet", "attack@cnn", "attack@resnet", "defend@cnn_pgd_at", "forge",
                 "patch", "sanitize"}
    assert not rerun & untouched



def test_a_typo_in_params_fails_the_run_even_when_everything_is_cached(repo: Path):
    edit_params(repo, "  lr: 0.003\n", "  lr: 0.003\n  lrr: 0.01\n")
    out = dvc(repo, "repro", ok=False)
    assert "unknown key 'train.lrr'" in out and ran(out) == {VALIDATE}
    assert stale(repo) == set()  # the validation output persists: nothing else looks changed
    edit_params(repo, "  lrr: 0.01\n", "")
    # An unknown model fails in validation, before DVC looks for models/vit
    edit_params(repo, "  models: [logreg, cnn, resnet, cnn_augment,", "  models: [logreg, cnn, resnet, vit, cnn_augment,")
    out = dvc(repo, "repro", ok=False)
    assert "'attack.models' names ['vit'], which are not models" in out and "No such file" not in out
    edit_params(repo, "  models: [logreg, cnn, resnet, vit, cnn_augment,", "  models: [logreg, cnn, resnet, cnn_augment,")
    assert ran(dvc(repo, "repro")) == {VALIDATE}


def test_only_the_active_profile_is_tracked(repo: Path):
    # The repo runs the smoke profile: editing the inactive default profile changes nothing.
    edit_params(repo, "train: {epochs: 10, batch_size: 128", "train: {epochs: 11, batch_size: 128")
    assert stale(repo) == set()
    # A new profile needs no dvc.yaml edit: adding one (a copy of smoke) changes nothing ...
    params = repo / "params.yaml"
    text = params.read_text()
    smoke = text[text.index("\n  smoke:\n") + 1:]
    params.write_text(text + smoke.replace("  smoke:\n", "  tiny:\n", 1))
    assert stale(repo) == set()
    # ... and switching to it makes the stages track its keys.
    set_profile(repo, "tiny")
    assert {"train@cnn", "robustness@cnn"} <= stale(repo)
    assert "profiles.tiny.train" in (repo / "reports/params/train@cnn.json").read_text()
    assert "profiles.tiny.attack" in (repo / "reports/params/robustness@cnn.json").read_text()
    params.write_text(text)  # back to smoke, without tiny
    assert stale(repo) == set()
    # The active profile's sizes are tracked: every training stage goes stale.
    edit_params(repo, "train: {epochs: 1, batch_size: 128, n_train: 2000", "train: {epochs: 2, batch_size: 128, n_train: 2000")
    assert {s for s in stale(repo) if s.startswith("train@")} == {f"train@{m}" for m in (
        "logreg", "mlp", "cnn", "resnet", "cnn_seed1", "logreg_r7", "logreg_r14", "cnn_5ep", *POISONED)}
    params.write_text(text)
    assert stale(repo) == set()


def test_recovery_after_a_failed_ingest(repo: Path, tmp_path):
    """A corrupt mirror fails ingest after DVC has removed its outputs; `dvc checkout ingest`
    restores the cached ones byte-identically and `git checkout` the small ones kept in git.
    A fallback mirror serving the same bytes makes nothing downstream stale (the mirror URL is
    provenance, kept out of data/prepared and out of the report's deps)."""
    git_commit(repo, "before a failed ingest")
    prepared = repo / "data/prepared/fashion-mnist"
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (corrupt / name).write_bytes(b"not the file")
    edit_params(repo, "  mirrors: []", f"  mirrors: [{corrupt}]")
    out = dvc(repo, "repro", "ingest", ok=False)
    assert "checksum mismatch" in out
    assert not prepared.exists() and not (repo / "reports/ingest/metrics.json").exists()  # DVC removed them
    dvc(repo, "checkout", "ingest")
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before
    subprocess.run(["git", "checkout", "--", "params.yaml", "reports/ingest", "reports/headline/ingest.json",
                    "reports/cost/ingest.json"], cwd=repo, check=True)
    assert stale(repo) == set()

    edit_params(repo, "  mirrors: []", f"  mirrors: [{corrupt}, {FMNIST_LOCAL}]")
    assert ran(dvc(repo, "repro")) == {VALIDATE, "ingest"}  # only provenance changed
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before
    provenance = json.loads((repo / "reports/ingest/provenance.json").read_text())
    assert provenance["mirrors"] == [str(corrupt), str(FMNIST_LOCAL)]


def test_adding_or_removing_a_model_stales_only_its_own_stages(repo: Path):
    """A stage of one model tracks its own entry of the models list (dvc.yaml's `own:`): a new
    trained model and a new defended model make only their own stages stale (the report follows
    once they have run); dropping a model from the leaderboard or the backdoor table none."""
    from tests.test_schema import _own_edits

    params = repo / "params.yaml"
    text = params.read_text()
    params.write_text(_own_edits(text))
    assert stale(repo) == {"train@cnn_wide", "attack@cnn_wide", "robustness@cnn_wide", "defend@cnn_gaussian_b",
                           "attack@cnn_gaussian_b", "robustness@cnn_gaussian_b", "certify@cnn_gaussian_b"}
    params.write_text(text)
    assert stale(repo) == set()


def test_a_model_trained_elsewhere_is_imported_and_ranked(repo: Path):
    """`cnn`'s weights brought back as a user's folder (safetensors + JSON): only the new model's
    stages run, and its robustness is exactly `cnn`'s (same weights, same images)."""
    folder = repo / "weights/my_cnn"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes((repo / "models/cnn/model.safetensors").read_bytes())
    (folder / "model.json").write_text(json.dumps({"arch": "cnn", "claimed_accuracy": 0.6, "source": "the smoke cnn"}))
    params = repo / "params.yaml"
    text = params.read_text()
    edit_params(repo, "imports:\n  models: {}", "imports:\n  models: {my_cnn: {path: weights/my_cnn}}")
    edit_params(repo, "  models: [logreg, cnn, resnet,", "  models: [logreg, cnn, my_cnn, resnet,")
    assert stale(repo) == {"import_model@my_cnn", "attack@my_cnn", "robustness@my_cnn"}
    assert ran(dvc(repo, "repro")) == {VALIDATE, "import_model@my_cnn", "attack@my_cnn", "robustness@my_cnn", "report"}
    mine, cnn = (json.loads((repo / f"reports/robustness/{m}/metrics.json").read_text()) for m in ("my_cnn", "cnn"))
    assert mine["linf"] == cnn["linf"] and mine["n"] == cnn["n"]
    imported = json.loads((repo / "reports/imports/my_cnn/metrics.json").read_text())
    assert imported["n_test"] == 10000 and imported["claimed_accuracy"] == 0.6 and 0.5 < imported["test_accuracy"] < 0.7
    assert load_model(repo / "models/my_cnn").sidecar["imported"]["source"] == "the smoke cnn"
    summary = (repo / "reports/summary.md").read_text()
    assert re.search(rf"^\| \d+ \| my_cnn \| {cnn['n']} \| ", summary, re.M)  # a leaderboard row
    params.write_text(text)
    assert stale(repo) == set()
    # `advgen evaluate` on the same folder, outside the pipeline: the same images and checks, as an entry
    out = repo / "weights/my_cnn.entry.json"
    done = subprocess.run([sys.executable, "-m", "advgen.cli", "evaluate", "weights/my_cnn", "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, env=venv_env())
    assert done.returncode == 0, done.stderr
    e = json.loads(out.read_text())
    assert e["clean_acc"] == cnn["clean_accuracy"] and e["n_eval"] == cnn["n"] and e["claimed_acc"] == 0.6
    assert e["eps"] == [0.025, 0.05, 0.1, 0.15, 0.2] and e["provenance"]["kind"] == "safetensors"
    for eps, acc in e["autoattack_acc"].items():  # other random starts, no transfer: close, not equal
        assert abs(acc - cnn["linf"]["worst_case"][eps]) <= 3 / cnn["n"], eps
    assert e["checks_failed"] == 0 and not e["flags"]["zero_gradient"]["raised"] and "my_cnn: clean" in done.stdout
    out.unlink()


def test_a_sweep_runs_through_dvcs_queue(repo: Path):
    """`advgen sweep` queues one experiment per value (`dvc exp run --queue -S`) and runs the
    queue (`dvc exp run --run-all`); both results come back as experiments of HEAD."""
    git_commit(repo, "before the sweep")
    params = (repo / "params.yaml").read_text()
    proc = advgen(repo, "sweep", "dimension.eps=0.02,0.1", "--target", "dimension", "--run", "--prefix", "dim-")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "queued 2 experiments: dim-eps-0.02, dim-eps-0.1" in proc.stdout
    lines = proc.stdout.splitlines()
    labels = next(line.split()[1:] for line in lines if line.startswith("metric "))
    row = next(line.split()[2:] for line in lines if line.startswith("dimension: logreg.fgsm_accuracy "))
    value = dict(zip(labels, map(float, row)))
    head, small, large = value["HEAD"], value["dim-eps-0.02"], value["dim-eps-0.1"]
    assert large < head < small  # FGSM at eps 0.1 does more damage than at 0.05 (HEAD), and 0.02 less
    assert (repo / "params.yaml").read_text() == params and stale(repo) == set()  # the workspace is untouched
    shown = json.loads(dvc(repo, "exp", "show", "--json", "-n", "1"))
    names = {e.get("name") for rev in shown for e in rev.get("experiments") or []}
    assert {"dim-eps-0.02", "dim-eps-0.1"} <= names


@pytest.fixture
def s3(repo: Path):
    """A moto S3 server on 127.0.0.1 with an empty bucket, as the repo's default remote
    (credentials in .dvc/config.local, which git does not track); stopped after the test."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="advgen")
    yield url
    server.stop()


def use_remote(repo: Path, endpoint: str) -> None:
    dvc(repo, "remote", "add", "--local", "-f", "-d", "team", "s3://advgen/cache")
    for key, value in (("endpointurl", endpoint), ("access_key_id", "testing"), ("secret_access_key", "testing"),
                       ("region", "us-east-1")):
        dvc(repo, "remote", "modify", "--local", "team", key, value)


def test_a_fresh_clone_pulls_every_result_from_the_remote_and_recomputes_nothing(repo: Path, s3: str, tmp_path):
    import time

    assert ran(dvc(repo, "repro")) == {VALIDATE}  # the lock up to date with the params the tests restored
    git_commit(repo, "smoke results, final")
    subprocess.run(["git", "tag", "-f", "smoke-ref"], cwd=repo, check=True, capture_output=True)
    use_remote(repo, s3)
    start = time.perf_counter()
    dvc(repo, "push", "--run-cache")
    pushed = time.perf_counter() - start

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    assert not (clone / "models/cnn").exists()
    use_remote(clone, s3)
    start = time.perf_counter()
    dvc(clone, "pull")
    pulled = time.perf_counter() - start
    for rel in ("models/cnn/model.safetensors", "data/prepared", "data/scraped/p1_sha256/status.tsv",
                "models/split_view", "reports/index.html"):
        assert (clone / rel).exists(), rel
    assert json.loads(dvc(clone, "status", "--json")) == {VALIDATE: ["always changed"]}
    start = time.perf_counter()
    assert ran(dvc(clone, "repro")) == {VALIDATE}
    print(f"push {pushed:.1f} s, pull {pulled:.1f} s, repro after pull {time.perf_counter() - start:.1f} s")

    # An unreachable remote (here the default kind, a folder, that is not there: an unmounted share;
    # an S3 endpoint that refuses connections fails the same way, after s3fs's retries): a clear
    # error, and what did not arrive is not passed off as complete.
    dead = tmp_path / "dead"
    subprocess.run(["git", "clone", "-q", str(repo), str(dead)], check=True, capture_output=True)
    dvc(dead, "remote", "add", "--local", "-f", "-d", "team", str(tmp_path / "not-mounted" / "advgen-cache"))
    out = dvc(dead, "pull", ok=False)
    assert "failed to pull data from the cloud" in out, out[-2000:]
    assert not (dead / "models/cnn").exists()
    assert "train@cnn" in json.loads(dvc(dead, "status", "--json"))


def advgen(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advgen.cli", *args], cwd=repo, env=venv_env(), capture_output=True,
                          text=True, timeout=900)


def test_scheduled_rerun_passes_clean_and_fails_on_a_planted_regression(repo: Path, s3: str, tmp_path):
    use_remote(repo, s3)
    summary = tmp_path / "summary.md"
    # Clean: two stages rebuilt from scratch, byte-identical to the reference (same machine).
    proc = advgen(repo, "rerun", "--profile", "smoke", "--reference", "smoke-ref", "--summary", str(summary),
                  "-f", "-s", "curate", "scrape")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = summary.read_text()
    listed = re.search(r"byte-identical to the reference \(same inputs, same environment\): \d+ stage\(s\) \(([^)]*)\)", text)
    assert "No regression" in text and listed and {"curate", "scrape"} <= set(listed.group(1).split(", ")), text[:2000]
    assert "## Metrics against the reference" in text

    # Planted: a perceptual-hash tolerance of all 64 bits, so the phash policy keeps every poisoned
    # image; the rerun recomputes scrape and split_view and the gate names what moved.
    edit_params(repo, "  phash_distance: 10  # bits of 64", "  phash_distance: 64  # bits of 64")
    proc = advgen(repo, "rerun", "--profile", "smoke", "--reference", "smoke-ref", "--no-push")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"\*\*interval\*\* `reports/split_view/metrics\.json:sets\.p1_phash\.asr\.value`: [0-9.]+ "
                     r"\[[0-9.]+, [0-9.]+\] does not overlap the reference's 95% interval", proc.stdout), proc.stdout[-3000:]
    edit_params(repo, "  phash_distance: 64  # bits of 64", "  phash_distance: 10  # bits of 64")
