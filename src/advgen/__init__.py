"""advgen: a reproducible benchmark of adversarial robustness and generative models."""

__version__ = "0.1.0"
