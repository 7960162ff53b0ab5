"""advgen.io.tsv writes what pandas' to_csv writes (the stages' curve TSVs), without pandas."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from advgen.io import tsv

POOL = [0, 1, -3, 2.5, 1e-7, 123456.789, float("nan"), None, True, False, "a", "x\ty", 'q"u', 0.1 + 0.2,
        np.float64(0.3), np.int64(7), np.float32(0.25)]


def _rows(rng: random.Random) -> list[dict]:
    keys = rng.sample(["epoch", "acc", "name", "flag"], rng.randint(1, 4))
    return [{k: rng.choice(POOL) for k in keys if rng.random() < 0.85} for _ in range(rng.randint(1, 6))]


@pytest.mark.parametrize("float_format", ["%.6f", "%.6g"])
def test_tsv_matches_pandas_on_random_tables(float_format):
    rng = random.Random(0)
    for _ in range(500):
        rows = _rows(rng)
        assert tsv(rows, float_format) == pd.DataFrame(rows).to_csv(sep="\t", index=False,
                                                                     float_format=float_format), rows


def test_tsv_by_hand():
    rows = [{"epoch": 1, "acc": 0.5, "note": None}, {"epoch": 2, "acc": None, "note": "a\tb"}]
    assert tsv(rows) == 'epoch\tacc\tnote\n1\t0.500000\t\n2\t\t"a\tb"\n'
    assert tsv([{"x": 1}, {"x": 2.0}], "%.3g") == "x\n1\n2\n"  # ints and floats: a float column
    with pytest.raises(TypeError, match="list of dicts"):
        tsv({"epoch": [1, 2]})
