"""The model registry: one interface for every family, config sections per family, generic Algorithm 2.

A throwaway second family ("tiny": a 1x1 convolution over NHWC pixels, BN per channel, global
average pool) is registered by a fixture and removed afterwards. It is the proof of the registry's
promise: a family the trainer, the runner, the config code and the CLI have never heard of trains
through all of them, with NHWC pre-activations, Algorithm 2 and per-family config fields.
"""
import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from bn_experiments import batchnorm, cli, models, runner, sweep
from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments.configs import default

# ----------------------------------------------------------------------------- the "tiny" family


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    in_channels: int
    channels: int
    activation: str
    norm: str
    init_std: float
    num_classes: int = 10

    @property
    def use_bn(self) -> bool:
        return self.norm == "batchnorm"


def _fields():
    f = ml_collections.ConfigDict()
    f.channels = 6  # output channels of the 1x1 convolution
    return f


def _validate(model):
    models.check(isinstance(model.get("channels"), int) and model["channels"] > 0,
                 "model.channels", model.get("channels"), "must be a positive integer")
    models.check_choice(model.get("activation"), "model.activation", ("relu", "sigmoid"))
    models.check_choice(model.get("norm"), "model.norm", ("none", "batchnorm"))
    models.check_tracked_units(model.get("tracked_units") or (), model["channels"])


def _make_config(model, input_shape):
    return TinyConfig(in_channels=input_shape[-1], channels=model.channels,
                      activation=model.activation, norm=model.norm, init_std=float(model.init_std))


def _init(key, cfg, numbers):
    k1, k2 = jax.random.split(key)
    std = numbers["init_std"] if numbers else cfg.init_std
    params = {"conv": jax.random.normal(k1, (cfg.in_channels, cfg.channels)) * std,
              "out": jax.random.normal(k2, (cfg.channels, cfg.num_classes)) * std}
    state = {"bn": []}
    if cfg.use_bn:
        params["bn"], bn_state = batchnorm.init(cfg.channels)
        state["bn"].append(bn_state)
    return params, state


def _apply(params, state, x, *, cfg, train, rng=None):
    z = x @ params["conv"]                       # (N, H, W, channels): a 1x1 convolution
    bn_inputs, new_state = [], {"bn": []}
    if cfg.use_bn:
        bn_inputs.append(z)
        z, s = batchnorm.apply(params["bn"], state["bn"][0], z, train=train)
        new_state["bn"].append(s)
    h = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[cfg.activation](z)
    logits = h.mean((1, 2)) @ params["out"]
    return logits, new_state, {"preacts": [z], "bn_inputs": bn_inputs}


TINY = models.ModelFamily("tiny", fields=_fields, validate=_validate, make_config=_make_config,
                          init=_init, apply=_apply)


@pytest.fixture
def tiny():
    models.register(TINY)
    yield TINY
    models.unregister("tiny")
    assert "tiny" not in models.names()


def _cfg(name="mlp", **overrides):
    cfg = default.get_config()
    cfg.steps, cfg.eval_every, cfg.batch_size = 20, 10, 16
    cfg.data.source = "synthetic:128:32"
    cfg.model.tracked_units = (0, 1)
    if name != "mlp":
        config_lib.set_model(cfg, name)
    for k, v in overrides.items():
        config_lib.set_dotted(cfg, k, v)
    return cfg


# ---------------------------------------------------------------------------------- registry


def test_registry_lists_the_mlp_and_builds_the_default_model_section():
    assert "mlp" in models.names() and models.get("mlp").name == "mlp"
    assert models.get(None) is models.get("mlp")  # summaries written before model.name existed
    section = models.default_config("mlp")
    assert section.to_dict() == default.get_config().model.to_dict()
    assert set(models.COMMON_FIELDS) == {"name", "activation", "norm", "init", "init_std",
                                         "tracked_units", "bn_momentum", "bn_epsilon",
                                         "bn_stop_gradient", "bn_affine", "bn_noise"}
    assert set(section.keys()) == set(models.COMMON_FIELDS) | {
        "widths", "hidden_scale", "bn_position", "bn_norm_p", "bn_whiten_group", "dropout"}


def test_unknown_model_name_names_the_field_and_the_known_ones():
    with pytest.raises(ValueError, match=r"model\.name='resnet'.*'mlp'"):
        models.get("resnet")
    cfg = _cfg()
    cfg.model.name = "resnet"
    with pytest.raises(config_lib.ConfigError, match=r"model\.name='resnet'.*mlp"):
        config_lib.validate(cfg, reference=default.get_config())
    with pytest.raises(config_lib.ConfigError, match=r"model\.name='resnet'"):
        config_lib.set_model(_cfg(), "resnet")


def test_a_family_may_not_redefine_a_common_field():
    bad = dataclasses.replace(TINY, name="bad", fields=lambda: ml_collections.ConfigDict(
        {"activation": "relu"}))
    with pytest.raises(ValueError, match="common fields"):
        models.register(bad)
    assert "bad" not in models.names()


def test_a_field_of_another_family_is_refused_in_one_line(tiny):
    cfg = _cfg()
    cfg.model.name = "tiny"  # set by hand, not through set_model: the MLP's fields stay behind
    cfg.model.channels = 4
    for reference in (None, default.get_config()):
        with pytest.raises(config_lib.ConfigError) as err:
            config_lib.validate(cfg, reference=reference)
        assert str(err.value) == ("config key 'model.bn_norm_p' belongs to model 'mlp', not "
                                  "to model.name='tiny'; remove it")
    mlp_cfg = _cfg()
    mlp_cfg.model.channels = 4
    with pytest.raises(config_lib.ConfigError, match="'model.channels' belongs to model 'tiny'"):
        config_lib.validate(mlp_cfg, reference=default.get_config())
    typo = _cfg("tiny")
    typo.model.chanels = 4  # belongs to no family: the usual did-you-mean
    with pytest.raises(config_lib.ConfigError, match="did you mean 'model.channels'"):
        config_lib.validate(typo, reference=default.get_config())


def test_set_model_keeps_common_fields_and_swaps_the_family_fields(tiny):
    cfg = _cfg(**{"model.activation": "relu", "model.init_std": 0.3, "model.widths": (7,),
                  "model.tracked_units": (2,)})
    config_lib.set_model(cfg, "tiny")
    m = cfg.model
    assert (m.name, m.activation, m.init_std, m.tracked_units, m.channels) == (
        "tiny", "relu", 0.3, (2,), 6)
    assert "widths" not in m
    config_lib.validate(cfg, reference=default.get_config(), num_train=128)
    config_lib.set_model(cfg, "mlp")
    assert cfg.model.widths == (100, 100, 100) and "channels" not in cfg.model
    assert cfg.model.activation == "relu"
    # The same family again changes nothing (its own fields keep their values).
    cfg.model.widths = (9,)
    assert config_lib.set_model(cfg, "mlp").model.widths == (9,)


def test_family_validate_errors_become_config_errors(tiny):
    cfg = _cfg("tiny", **{"model.channels": 0})
    with pytest.raises(config_lib.ConfigError, match=r"^model\.channels=0 is invalid"):
        config_lib.runs(cfg)
    cfg = _cfg("tiny", **{"model.tracked_units": (0, 6)})
    with pytest.raises(config_lib.ConfigError, match=r"model\.tracked_units.*\[0, 6\)"):
        config_lib.runs(cfg)


# ------------------------------------------------------------------ a new family end to end


def test_a_new_family_trains_through_the_generic_trainer_and_runner(tiny):
    cfg = _cfg("tiny", **{"model.norm": "batchnorm", "population_batches": 3,
                          "model.tracked_units": (0, 3)})
    cfg.grid = (("model.init_std", (0.1, 0.5)), ("seed", (0, 1)))
    runs = sweep.expand(cfg, input_shape=(28, 28, 1), num_train=128)
    assert runs[0].static.model_name == "tiny" and runs[0].static.model.in_channels == 1
    groups = runner._groups(runs, per_program=16)
    assert [len(g) for g in groups] == [4]  # init_std is a number: one program
    data = data_lib.to_device(data_lib.load(cfg.data.source))
    results = runner.train_runs(runs, data, target=0.5, progress=False)
    for res in results:
        assert np.all(np.isfinite(res.train["train_loss"])) and len(res.train["train_loss"]) == 20
        assert {"preact_p50", "preact_p50_unit3", "test_preact_p50", "saturation_layer1",
                "ics_w1_layer1"} <= set(res.train) | set(res.evals)
        assert 0 <= res.final["test_accuracy_population"] <= 1


def test_cli_swaps_the_model_before_the_other_overrides(tiny, tmp_path, capsys):
    args = ["--config", "fig1_mnist:quick", "--config.model.channels=4", "--config.model.norm=none"]
    cfg = cli._load_config(["--config.model.name=tiny", *args])[0]
    assert cfg.model.name == "tiny" and cfg.model.channels == 4 and "widths" not in cfg.model
    config_lib.validate(cfg, reference=default.get_config())
    cfg = cli._load_config(["--config.model.name", "tiny", *args])[0]
    assert cfg.model.channels == 4
    # Without the swap the family's field is unknown: the usual one-line did-you-mean error.
    workdir = tmp_path / "w"
    assert cli.main(["run", "--workdir", str(workdir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.channels" in err
    assert cli.main(["run", "--workdir", str(workdir), "--config", "fig1_mnist:quick",
                     "--config.model.name=resnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.name='resnet'" in err and "mlp" in err
    assert not workdir.exists()


def test_model_name_in_a_named_run_swaps_the_family(tiny):
    cfg = _cfg(**{"model.widths": (8,)})
    cfg.runs = ("a: model.name=tiny, model.channels=2", "b: model.norm=batchnorm")
    a, b = config_lib.runs(cfg)
    assert a.static.model_name == "tiny" and a.static.model.channels == 2
    assert "model.widths" not in a.flat and a.flat["model.name"] == "tiny"
    assert b.static.model_name == "mlp" and b.static.model.widths == (8,)
    assert len(runner._groups([a, b], per_program=4)) == 2


# ---------------------------------------------------------------------- generic Algorithm 2


def _old_mlp_population_state(params, state, batches, *, config):
    """`mlp.population_state` as it was before it became generic (the reference)."""
    mlp = models.get("mlp")
    config = dataclasses.replace(config, bn_noise=False)

    def moments_fn(x):
        _, _, inter = mlp.apply(params, state, x, cfg=config, train=True)
        return {"bn": [batchnorm.batch_moments(z) for z in inter["bn_inputs"]]}
    return batchnorm.population_statistics(moments_fn, batches)


@pytest.mark.parametrize("noise", [False, True])
def test_population_state_is_algorithm_2_and_the_old_mlp_bits(noise):
    family = models.get("mlp")
    section = models.default_config("mlp")
    section.widths, section.norm = (6, 5), "batchnorm"
    cfg = dataclasses.replace(family.make_config(section, (28, 28, 1)), bn_noise=noise)
    params, state = family.init(jax.random.key(0), cfg, None)
    batches = jax.random.uniform(jax.random.key(1), (4, 16, 28, 28, 1))
    new = jax.jit(lambda p, s, b: models.population_state(family, p, s, b, cfg=cfg))(
        params, state, batches)
    old = jax.jit(lambda p, s, b: _old_mlp_population_state(p, s, b, config=cfg))(
        params, state, batches)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a).view(np.int32),
                                                            np.asarray(b).view(np.int32)), new, old)
    zs = [family.apply(params, state, b, cfg=cfg, train=True)[2]["bn_inputs"] for b in batches]
    for layer in range(2):
        z = np.stack([np.asarray(zz[layer], np.float64) for zz in zs])
        np.testing.assert_allclose(new["bn"][layer]["mean"], z.mean(1).mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(new["bn"][layer]["var"], 16 / 15 * z.var(1).mean(0), rtol=1e-3)


def test_population_state_of_an_nhwc_family_averages_over_batch_and_space(tiny):
    cfg = TinyConfig(in_channels=3, channels=4, activation="relu", norm="batchnorm", init_std=0.5)
    params, state = TINY.init(jax.random.key(0), cfg, None)
    batches = jax.random.uniform(jax.random.key(1), (3, 8, 5, 5, 3))
    pop = models.population_state(TINY, params, state, batches, cfg=cfg)
    z = np.stack([np.asarray(b @ params["conv"], np.float64).reshape(-1, 4) for b in batches])
    np.testing.assert_allclose(pop["bn"][0]["mean"], z.mean(1).mean(0), rtol=1e-4, atol=1e-6)
    m = 8 * 5 * 5
    np.testing.assert_allclose(pop["bn"][0]["var"], m / (m - 1) * z.var(1).mean(0), rtol=1e-3)


def test_bn_and_no_bn_arms_share_their_initial_weights_for_pairing():
    """Claims pair BN and no-BN runs by seed: the same seed must give both the same W draws."""
    family = models.get("mlp")
    base = models.default_config("mlp")
    params = {}
    for norm in ("none", "batchnorm"):
        base.norm = norm
        cfg = family.make_config(base, (28, 28, 1))
        params[norm], _ = family.init(jax.random.key(3), cfg, {"init_std": 0.1})
    for a, b in zip(params["none"]["hidden"], params["batchnorm"]["hidden"]):
        np.testing.assert_array_equal(a["w"], b["w"])
    np.testing.assert_array_equal(params["none"]["output"]["w"], params["batchnorm"]["output"]["w"])
