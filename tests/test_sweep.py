"""`advgen sweep` (src/advgen/sweep.py): the grid it queues; the queue itself runs in
tests/test_pipeline.py (two smoke experiments through `dvc exp run --run-all`)."""
import pytest

from advgen.sweep import SweepError, check_keys, grid, name_of, queue_commands, sweep


def test_the_grid_is_every_combination_in_order():
    assert grid(["attack.eps=0.05,0.1", "seed=0,1"]) == [
        [("attack.eps", "0.05"), ("seed", "0")], [("attack.eps", "0.05"), ("seed", "1")],
        [("attack.eps", "0.1"), ("seed", "0")], [("attack.eps", "0.1"), ("seed", "1")]]


def test_each_point_is_one_queued_experiment_with_its_params_and_targets():
    assert queue_commands(["gan.loss=minimax,wgan_gp"], ["gan"], prefix="g-") == [
        ["exp", "run", "--queue", "-n", "g-loss-minimax", "-S", "gan.loss=minimax", "gan"],
        ["exp", "run", "--queue", "-n", "g-loss-wgan_gp", "-S", "gan.loss=wgan_gp", "gan"]]
    assert name_of([("a.b", "x/y z"), ("seed", "1")]) == "b-x-y-z_seed-1"


@pytest.mark.parametrize("axis", ["eps", "eps=", "=1,2", "eps=1,,2", "1eps=3", "a b=1"])
def test_a_malformed_axis_is_named(axis: str):
    with pytest.raises(SweepError, match="expected KEY=V1,V2"):
        grid([axis])


def test_an_axis_given_twice_or_clashing_names_are_refused():
    with pytest.raises(SweepError, match="given twice"):
        grid(["seed=0", "seed=1"])
    with pytest.raises(SweepError, match="same name"):
        sweep(["x.eps=1,1"], [], dvc=lambda a: "")


def test_run_starts_the_queue_after_queueing():
    calls = []
    names = sweep(["seed=0,1"], ["train@cnn"], dvc=lambda a: calls.append(a) or "", run=True, jobs=2)
    assert names == ["seed-0", "seed-1"]
    assert calls[-1] == ["exp", "run", "--run-all", "--jobs", "2"] and len(calls) == 3


def test_a_key_missing_from_params_is_refused_before_queueing(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\ndimension:\n  eps: 0.05\n")
    check_keys(params, ["seed=0,1", "dimension.eps=0.1"])
    with pytest.raises(SweepError, match="has no key 'attack.eps' \\(at 'attack'\\)"):
        check_keys(params, ["attack.eps=0.1"])
    with pytest.raises(SweepError, match="has no key 'dimension.epz'"):
        check_keys(params, ["dimension.epz=0.1"])
