"""Generative models (GANs, and the diffusion models of a later issue) and their evaluation.

Kept apart from the classifier code: ``models`` (generator/discriminator architectures and the
generator file format), ``gan`` (losses and training), ``features`` (the offline feature
network), ``scores`` (FID, KID, precision/recall, mode coverage), ``codes`` (code-space probes).
"""
