"""The offline feature network and the Frechet distance in its features.

No Inception weights exist offline, so generative scores live in the penultimate features of a
classifier the pipeline trains (``models/<name>``, a ``cnn``); the sha256 of its weights goes
next to every score, and scores are compared only under one hash.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ..models import load_model


class FeatureNet(nn.Module):
    """A frozen classifier's penultimate layer as a feature extractor for torchmetrics.

    Input (B, C, H, W) float in [0, 1] (what generators emit); output (B, num_features).
    ``sha256`` is the sha256 of the classifier's weights file.
    """

    def __init__(self, classifier: nn.Module, sha256: str):
        super().__init__()
        if not hasattr(classifier, "embed"):
            raise ValueError(f"feature network {type(classifier).__name__} has no penultimate layer (embed); "
                             "use a cnn model")
        self.classifier = classifier.eval()
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.sha256 = sha256
        self.num_features = int(classifier.head[-1].in_features)

    def train(self, mode: bool = True) -> "FeatureNet":
        return super().train(False)  # always in eval mode (dropout and BatchNorm frozen)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, F)
        return self.classifier.embed(x).float()

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.classifier(x).float()


def load_feature_net(name: str, expected_sha256: str | None = None,
                     device: torch.device | str = "cpu", key: str = "evaluate_generative.feature_sha256") -> FeatureNet:
    """``models/<name>`` as a :class:`FeatureNet`. With ``expected_sha256`` (params ``key``), a
    classifier whose weights hash differs is refused: its scores would not be comparable."""
    folder = Path("models") / name
    model = load_model(folder, device)
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise ValueError(f"params.yaml: '{key}' = {expected_sha256} but {folder}/model.safetensors has sha256 {sha}; "
                         "scores under another feature network are not comparable (update the key to accept it)")
    return FeatureNet(model, sha)


@torch.no_grad()
def extract(net: FeatureNet, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Features (N, F) as float64 on the CPU of images (N, C, H, W) in [0, 1]."""
    device = next(net.parameters()).device
    return torch.cat([net(x[i:i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def classify(net: FeatureNet, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities (N, K) of images (N, C, H, W)."""
    device = next(net.parameters()).device
    return torch.cat([torch.softmax(net.logits(x[i:i + batch_size].to(device)), 1).cpu()
                      for i in range(0, len(x), batch_size)])


def _moments(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two feature sets (N, F), in float64,
    the formula torchmetrics uses (trace of the square root via the eigenvalues of S1 S2)."""
    (mu1, s1), (mu2, s2) = _moments(f1.double()), _moments(f2.double())
    covmean = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * covmean)
