from dataclasses import dataclass, field

import pytest

from advgen.config import ConfigError, from_dict, require, section


@dataclass
class Cfg:
    steps: int
    lr: float = 0.1
    names: list[str] = field(default_factory=list)

    def validate(self) -> None:
        require(self.steps > 0, "steps", f"must be > 0, found {self.steps}")


def test_builds_and_accepts_int_for_float():
    cfg = from_dict(Cfg, {"steps": 3, "lr": 1, "names": ["a"]}, "demo")
    assert (cfg.steps, cfg.lr, cfg.names) == (3, 1, ["a"])


@pytest.mark.parametrize("data, needle", [
    ({"steps": 3, "stpes": 4}, "unknown key 'demo.stpes'; 'demo' accepts ['lr', 'names', 'steps']"),
    ({"steps": "3"}, "'demo.steps' = '3' has the wrong type"),
    ({"steps": True}, "'demo.steps' = True has the wrong type"),
    ({"steps": 3, "names": [1]}, "'demo.names'"),
    ({}, "missing key 'demo.steps'"),
    ({"steps": 0}, "'demo.steps' must be > 0, found 0"),
])
def test_rejects_bad_values_naming_the_key(data, needle):
    with pytest.raises(ConfigError) as err:
        from_dict(Cfg, data, "demo")
    assert needle in str(err.value)


def test_profile_merge_and_errors():
    params = {"profile": "smoke", "train": {"lr": 1.0},
              "profiles": {"default": {"train": {"epochs": 9}}, "smoke": {"train": {"epochs": 1}}}}
    assert section(params, "train") == {"lr": 1.0, "epochs": 1}
    with pytest.raises(ConfigError, match="'profile' = 'nope' is not defined"):
        section({**params, "profile": "nope"}, "train")
    clash = {**params, "train": {"epochs": 3}}
    with pytest.raises(ConfigError, match="'train.epochs' also set in 'profiles.smoke.train'; size-like keys belong to the profile"):
        section(clash, "train")


def test_real_params_file_is_valid():
    from advgen.config import load_params
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    for profile in params["profiles"]:
        merged = section({**params, "profile": profile}, "train")
        assert merged["epochs"] >= 1 and merged["batch_size"] >= 1
