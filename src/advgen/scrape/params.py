"""The scrape area's sections of params.yaml (``curate``, ``scrape``), one validated dataclass each."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, require
from ..schema import sized

#: the integrity policies (advgen.scrape.scraper.judge): keep everything, exact sha256, perceptual hash
POLICIES = ("none", "sha256", "phash")
WEB_KEYS = ("p_expired", "p_slow", "p_flaky", "p_robots", "p_opt_out", "p_drift", "slow_ms")
SCRAPER_KEYS = ("concurrency", "per_domain", "domain_interval_s", "timeout_s", "retries", "backoff_s", "max_bytes",
                "max_redirects", "max_pixels")


@dataclass
class CurateConfig:
    """Publication time: the URL index of the training images."""

    n_domains: int  # virtual domains, split over the classes in proportion to their images
    zipf_exponent: float  # domain sizes within a class ~ 1 / rank^exponent
    n_items: int = sized()  # training images indexed (0 = all)

    def validate(self) -> None:
        require(self.n_domains >= 10, "n_domains", f"must be >= 10 (one per class at least), found {self.n_domains}")
        require(self.zipf_exponent > 0, "zipf_exponent", f"must be > 0, found {self.zipf_exponent}")
        require(self.n_items >= 0, "n_items", f"must be >= 0 (0 = all), found {self.n_items}")


@dataclass
class ScrapeConfig:
    """Download time: the simulated web, the scraper, the attacker and the integrity policies."""

    purchases: dict  # name -> fraction of the index's images the attacker bought (as whole target-class domains)
    policies: list[str]
    phash_distance: int  # the perceptual-hash policy's tolerance, in bits of 64
    target: int  # the class the index says for the attacker's images
    source: int  # the class of the images the attacker serves (triggered)
    trigger_size: int
    web: dict  # the WEB_KEYS
    scraper: dict  # the SCRAPER_KEYS
    host: str = field(default="127.0.0.1", kw_only=True)  # where the simulated web listens: loopback only
    shard_size: int = field(default=1000, kw_only=True)  # items per resumable shard (img2dataset's unit)
    epochs: int = sized()  # the cnn trained on each scraped set
    n_test: int = sized()  # test images for CA and ASR (0 = all)

    def validate(self) -> None:
        require(bool(self.purchases), "purchases", "must name at least one purchase fraction")
        for name, f in self.purchases.items():
            require(isinstance(f, (int, float)) and 0 <= f < 1, "purchases", f"'{name}' must lie in [0, 1), found {f!r}")
        require(bool(self.policies) and set(self.policies) <= set(POLICIES) and len(set(self.policies)) == len(self.policies),
                "policies", f"must be distinct names from {list(POLICIES)}, found {self.policies}")
        require(0 <= self.phash_distance <= 64, "phash_distance", f"must lie in [0, 64], found {self.phash_distance}")
        require(self.target >= 0 and self.source >= 0 and self.target != self.source, "source",
                f"target {self.target} and source {self.source} must be distinct class indices")
        require(self.trigger_size >= 1, "trigger_size", f"must be >= 1, found {self.trigger_size}")
        for key, allowed in (("web", WEB_KEYS), ("scraper", SCRAPER_KEYS)):
            unknown = sorted(set(getattr(self, key)) - set(allowed))
            require(not unknown, key, f"has unknown key(s) {unknown}; it takes {list(allowed)}")
        web = {k: self.web.get(k, 0.0) for k in WEB_KEYS}
        bad = {k: v for k, v in web.items() if k.startswith("p_") and not (isinstance(v, (int, float)) and 0 <= v <= 1)}
        require(not bad, "web", f"probabilities must lie in [0, 1], found {bad}")
        domain_states = sum(web[k] for k in ("p_expired", "p_slow", "p_flaky", "p_robots", "p_opt_out"))
        require(domain_states <= 1, "web", f"the domain-state probabilities sum to {domain_states:g} > 1")
        require(self.host in ("127.0.0.1", "localhost"), "host",
                f"must be 127.0.0.1: the simulated web never listens beyond this machine, found {self.host!r}")
        require(self.shard_size >= 1, "shard_size", f"must be >= 1, found {self.shard_size}")
        require(self.epochs >= 1, "epochs", f"must be >= 1, found {self.epochs}")
        require(self.n_test >= 0, "n_test", f"must be >= 0 (0 = all), found {self.n_test}")

    def datasets(self) -> list[str]:
        """The scraped datasets, ``<purchase>_<policy>`` (``data/scraped/<name>``)."""
        return [f"{p}_{pol}" for p in self.purchases for pol in self.policies]


SECTIONS: dict[str, type] = {"curate": CurateConfig, "scrape": ScrapeConfig}


def check(cfgs: dict[str, Any]) -> None:
    """A model trained on ``scraped/<name>`` names a dataset the scrape stage writes."""
    scrape, train = cfgs.get("scrape"), cfgs.get("train")
    if scrape is None or train is None:
        return
    names = scrape.datasets()
    for model, spec in train.models.items():
        data = spec.get("data", "") if isinstance(spec, dict) else ""
        if isinstance(data, str) and data.startswith("scraped/") and data.removeprefix("scraped/") not in names:
            raise ConfigError(f"params.yaml: 'train.models.{model}.data' = {data!r}; the scrape stage writes "
                              f"{['scraped/' + n for n in names]}")
