"""Verdicts over seeds (issue 23): the claims whose verdict rests on training runs (C9, C10) are
replicated once per seed of ``replicate.seeds`` by the ``replicate_c9`` and ``replicate_c10``
stages; their evaluators judge the per-seed figures by :func:`advgen.claims.over_seeds`."""
