"""The attacks area: adversarial attacks (native torch, batched, images in [0, 1]) and the
experiments built on them (robustness cascade, transfer, forging, patches, input dimension),
with their params, claims, headline and report sections.

One module per attack (:mod:`.fgsm`, :mod:`.pgd`, :mod:`.apgd`, :mod:`.square`, :mod:`.noise`;
shared steps in :mod:`.base`). This file imports nothing, so that a stage using one of them
depends on that one only.
"""
