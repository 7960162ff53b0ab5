"""The replicate area has no claim of its own: it re-measures C9 (defenses) and C10 (backdoors),
whose evaluators read ``replicate/<claim>/<seed>``."""
from __future__ import annotations

from ..claims import Claims

CLAIMS = Claims({})
