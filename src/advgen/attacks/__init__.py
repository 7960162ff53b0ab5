"""Adversarial attacks, native torch and batched. Inputs are images in [0, 1]."""
from .apgd import APGD, APGDT
from .base import Attack, AttackError, check_images, dlr_loss, dlr_targeted_loss, lp_norm, margin, project
from .fgsm import FGSM
from .noise import UniformNoise
from .pgd import PGD
from .square import Square

__all__ = ["APGD", "APGDT", "Attack", "AttackError", "FGSM", "PGD", "Square", "UniformNoise", "check_images",
           "dlr_loss", "dlr_targeted_loss", "lp_norm", "margin", "project"]
