"""Configs: shipped configs resolve by name, runs expand, bad values name their field."""
import ml_collections
import pytest

from bn_experiments import config as config_lib, sweep
from bn_experiments.configs import default, fig1_mnist


def test_shipped_configs_resolve_by_name_and_path():
    path = config_lib.resolve_path("fig1_mnist:quick")
    assert path.endswith("fig1_mnist.py:quick")
    assert config_lib.resolve_path(path.partition(":")[0]) == path.partition(":")[0]
    with pytest.raises(config_lib.ConfigError, match="fig1_mnist"):
        config_lib.resolve_path("fig_mnist")


def test_every_shipped_config_validates_against_the_default_keys():
    ref = default.get_config()
    for path in sorted(config_lib.config_dir().glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = __import__(f"bn_experiments.configs.{path.stem}", fromlist=["get_config"])
        for arg in (None, "quick"):
            cfg = module.get_config(arg)
            config_lib.validate(cfg, reference=ref)
            assert sweep.expand(cfg, num_train=8000)


def test_fig1_runs_are_paired_by_seed_and_differ_only_in_norm():
    """Figure 1: both networks for each of 5 seeds; a pair shares everything but `model.norm`, so
    the same init draw and batch order (the seed) is compared with and without BN."""
    runs = sweep.expand(fig1_mnist.get_config(), num_train=8000)
    by = {(r.flat["model.norm"], r.flat["seed"]): r for r in runs}
    assert sorted({s for _, s in by}) == [0, 1, 2, 3, 4] and len(runs) == 10
    for seed in range(5):
        no_bn, bn = by[("none", seed)], by[("batchnorm", seed)]
        assert no_bn.static.model.norm == "none" and bn.static.model.norm == "batchnorm"
        assert no_bn.numbers == bn.numbers
        diff = {k for k in no_bn.flat if no_bn.flat[k] != bn.flat[k]}
        assert diff == {"model.norm"}
    assert bn.flat["learning_rate"] == 0.05 and bn.flat["model.init_std"] == 0.1
    assert bn.flat["eval_steps"] == [50, 100, 200] or bn.flat["eval_steps"] == (50, 100, 200)
    assert bn.flat["model.widths"] == [100, 100, 100] and "grid" not in bn.flat
    quick = config_lib.runs(fig1_mnist.get_config("quick"))
    assert [r.name for r in quick] == ["no_bn", "bn"]


def test_run_spec_parsing():
    assert config_lib.parse_run("bn: model.norm=batchnorm, learning_rate=1.0") == (
        "bn", {"model.norm": "batchnorm", "learning_rate": 1.0})
    with pytest.raises(config_lib.ConfigError, match="name: key=value"):
        config_lib.parse_run("no colon")


def test_unknown_key_gets_a_did_you_mean():
    cfg = default.get_config()
    with pytest.raises(config_lib.ConfigError, match="did you mean 'learning_rate'"):
        config_lib.set_dotted(cfg, "learning_rat", 0.1)
    cfg.model.widht = 3
    with pytest.raises(config_lib.ConfigError, match="model.widths"):
        config_lib.validate(cfg, reference=default.get_config())


@pytest.mark.parametrize("key,value,field", [
    ("steps", 0, "steps"), ("batch_size", -1, "batch_size"), ("learning_rate", float("inf"), "learning_rate"),
    ("learning_rate", float("nan"), "learning_rate"), ("model.init_std", 0.0, "model.init_std"),
    ("optimizer.momentum", 1.0, "optimizer.momentum"), ("optimizer.schedule", "warp", "optimizer.schedule"),
    ("target_accuracy", 1.5, "target_accuracy"), ("model.tracked_units", (0, 100), "model.tracked_units"),
    ("model.norm", "groupnorm", "model.norm"), ("eval_every", 300, "eval_every"),
])
def test_impossible_values_name_the_field(key, value, field):
    cfg = default.get_config()
    config_lib.set_dotted(cfg, key, value)
    with pytest.raises(config_lib.ConfigError, match=field.replace(".", r"\.")):
        config_lib.runs(cfg, num_train=8000)


def test_batch_larger_than_the_data_is_refused():
    cfg = default.get_config()
    cfg.batch_size = 9000
    with pytest.raises(config_lib.ConfigError, match="batch_size.*8000"):
        config_lib.runs(cfg, num_train=8000)


def test_wrong_type_is_refused():
    cfg = default.get_config()
    with pytest.raises(config_lib.ConfigError, match="steps"):
        config_lib.set_dotted(cfg, "steps", "many")
    assert isinstance(cfg, ml_collections.ConfigDict)


def test_the_library_path_goes_through_the_same_gate_as_the_cli(tmp_path):
    """`runner.train_and_evaluate` validates exactly as `bn-exp run`: a typo'd key set from Python
    is refused (did-you-mean) before anything is trained or written."""
    from bn_experiments import runner
    cfg = fig1_mnist.get_config("quick")
    cfg.learning_rat = 5.0
    with pytest.raises(config_lib.ConfigError, match="'learning_rat'.*did you mean 'learning_rate'"):
        runner.train_and_evaluate(cfg, tmp_path / "w")
    cfg = fig1_mnist.get_config("quick")
    cfg.model.widht = (3,)
    with pytest.raises(config_lib.ConfigError, match="model.widths"):
        runner.train_and_evaluate(cfg, tmp_path / "w")
    with pytest.raises(config_lib.ConfigError, match="ConfigDict"):
        runner.train_and_evaluate({"steps": 5}, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_overrides_are_typed_by_their_field():
    from bn_experiments import config_load
    cfg = config_load.load("fig1_mnist")
    config_load.apply_overrides(cfg, [("steps", "1_000"), ("learning_rate", "1"),
                                      ("model.widths", "[5, 5]"), ("data.standardize", "true"),
                                      ("data.source", "idx:../x"), ("model.norm", "'batchnorm'")])
    assert (cfg.steps, cfg.learning_rate, cfg.model.widths) == (1000, 1.0, (5, 5))
    assert cfg.data.standardize is True and cfg.data.source == "idx:../x"
    assert cfg.model.norm == "batchnorm" and isinstance(cfg.learning_rate, float)


def test_quick_marks_a_smoke_run_and_a_full_config_does_not_mention_it():
    assert fig1_mnist.get_config("quick").smoke is True
    assert config_lib.SMOKE_KEY not in fig1_mnist.get_config()
    assert config_lib.SMOKE_KEY not in config_lib.runs(fig1_mnist.get_config())[0].flat


def test_lp_normalization_refuses_algorithm_2_in_one_line():
    cfg = default.get_config()
    cfg.model.norm, cfg.model.bn_norm_p, cfg.population_batches = "batchnorm", "l1", 4
    with pytest.raises(config_lib.ConfigError, match="population_batches=4 is invalid: must be 0 "
                                                     "with model.bn_norm_p='l1'"):
        config_lib.check(cfg)


def test_named_arms_pairs_every_arm_by_seed_and_quick_is_a_smoke_run():
    arms = {"a": "model.norm=none", "b": "model.norm=batchnorm, learning_rate=0.2"}
    cfg = default.named_arms(default.get_config(), None, arms, seeds=(3, 4))
    assert cfg.runs == ("a_seed3: model.norm=none, seed=3", "a_seed4: model.norm=none, seed=4",
                        "b_seed3: model.norm=batchnorm, learning_rate=0.2, seed=3",
                        "b_seed4: model.norm=batchnorm, learning_rate=0.2, seed=4")
    assert cfg.checkpoint_every == 0 and config_lib.SMOKE_KEY not in cfg
    runs = config_lib.runs(cfg)
    assert [(r.name, r.flat["seed"], r.flat["learning_rate"]) for r in runs][-1] == ("b_seed4", 4, 0.2)
    quick = default.named_arms(default.get_config(), "quick", arms, quick_eval_steps=(5,))
    assert quick.smoke is True and quick.checkpoint_every == 0 and quick.eval_steps == (5,)
    assert [r.split(":")[0] for r in quick.runs] == ["a_seed0", "a_seed1", "b_seed0", "b_seed1"]
