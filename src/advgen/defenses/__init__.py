"""Defenses against adversarial examples, one module per concern.

* :mod:`.adversarial`: training-time defenses as per-batch losses for the one training loop
  (:func:`advgen.training.fit`); :mod:`.training` has :func:`~.training.train_defense`, what the
  ``defend`` stage calls, and :mod:`.monitor` the catastrophic-overfitting monitor. Defended
  models are ordinary models (``models/<name>``, the format of ``train``'s) that every attack
  stage evaluates unchanged.
* :mod:`.squeeze`: feature squeezing as preprocessing and as a detector (the ``sanitize`` stage).
* :mod:`.smoothing`: randomized smoothing and its certificate (the ``certify`` stage).

This file imports nothing, so that a stage using one of them depends on that one only.
"""
