"""The ``replicate`` section of params.yaml: the seeds every replicated claim is trained from, and
what each replicated claim judges (named, so that a stage tracks only its own entries)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, require

C10_KEYS = ("source_specific", "all_to_one")


@dataclass
class ReplicateConfig:
    """Seeds of the replicate stages (one stage per claim and seed). The main pipeline's own run
    is the top-level ``seed``; a replicate from that seed retrains the main run's models (see
    :mod:`advgen.defenses.replicate`, :mod:`advgen.backdoors.replicate`)."""

    seeds: list[int]
    c9: str  # the defend.defenses entry C9 judges
    c10: dict  # source_specific / all_to_one: the poison.configs entries C10 judges

    def validate(self) -> None:
        ok = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds)
        require(ok, "seeds", f"must be a list of integers >= 0, found {self.seeds!r}")
        require(len(set(self.seeds)) == len(self.seeds), "seeds", f"must be distinct, found {self.seeds}")
        require(len(self.seeds) >= 2, "seeds",
                f"must name at least 2 seeds (a t-interval needs two), found {self.seeds}")
        require(isinstance(self.c10, dict) and sorted(self.c10) == sorted(C10_KEYS)
                and all(isinstance(v, str) for v in self.c10.values()), "c10",
                f"must map {list(C10_KEYS)} to poison.configs names, found {self.c10!r}")

    @property
    def c10_configs(self) -> list[str]:
        return [self.c10[k] for k in C10_KEYS]


SECTIONS: dict[str, type] = {"replicate": ReplicateConfig}


def lecture_defense(defend: Any) -> str:
    """The ``defend.defenses`` entry C9 judges: the first with method ``fgsm`` (the lecture's recipe)."""
    names = [n for n in defend.defenses if defend.spec(n).method == "fgsm"]
    if not names:
        raise ConfigError("params.yaml: 'defend.defenses' has no entry with method 'fgsm' (the lecture's "
                          f"adversarial training, which C9 judges); found {sorted(defend.defenses)}")
    return names[0]


def judged_configs(poison: Any, train: Any) -> list[str]:
    """What C10 judges, as its evaluator picks it: the first source-specific BadNets config and
    the all-to-one BadNets config with the largest rate, among those a train.models entry trains."""
    trained = {n for n, m in train.models.items() if isinstance(m, dict) and m.get("data") == f"poisoned/{n}"}
    specs = {n: poison.spec(n) for n in poison.configs if n in trained}
    lecture = [n for n, s in specs.items() if s.attack == "badnets" and s.source is not None]
    all_to_one = sorted((n for n, s in specs.items() if s.attack == "badnets" and s.source is None),
                        key=lambda n: specs[n].rate)
    if not lecture or not all_to_one:
        raise ConfigError("params.yaml: C10 judges a source-specific and an all-to-one BadNets config that "
                          "train.models trains (data: poisoned/<name>); 'poison.configs' has "
                          f"{'no source-specific one' if not lecture else 'no all-to-one one'}")
    return [lecture[0], all_to_one[-1]]


def check(cfgs: dict[str, Any]) -> None:
    """``replicate.c9`` and ``replicate.c10`` name what the claims judge."""
    rep = cfgs.get("replicate")
    if rep is None:
        return
    if cfgs.get("defend") is not None and rep.c9 != (want := lecture_defense(cfgs["defend"])):
        raise ConfigError(f"params.yaml: 'replicate.c9' = {rep.c9!r}; C9 judges {want!r} (the first "
                          "defend.defenses entry with method fgsm)")
    if cfgs.get("poison") is not None and cfgs.get("train") is not None:
        want = dict(zip(C10_KEYS, judged_configs(cfgs["poison"], cfgs["train"])))
        if rep.c10 != want:
            raise ConfigError(f"params.yaml: 'replicate.c10' = {rep.c10}; C10 judges {want}")
