"""The Inception families: parameter counts, shapes, conv BN statistics over N, H, W, the
intermediates of the family contract, the conv's own VJP, parity with flax.linen layers, and a
jitted training step of the full-size BN-Inception."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bn_experiments import batchnorm, models
from bn_experiments.models.inception import bn_inception, layers, linen, small_inception
from bn_experiments.models.inception.family import scaled


def _config(family, input_shape, **fields):
    model = models.default_config(family.name)
    model.update({"activation": "relu", "norm": "batchnorm", "init": "he", "init_std": 1.0,
                  **fields})
    return family.make_config(model, input_shape)


def _apply(family, cfg, train, **kw):
    """`family.apply` for `cfg`, jitted (eager execution compiles every op on its own: slow)."""
    return jax.jit(lambda p, s, x, rng=None: family.apply(p, s, x, cfg=cfg, train=train,
                                                          rng=rng, **kw))


def _small(n=4, width=0.125, shape=(28, 28, 1), **fields):
    """A small Inception's (family, cfg, params, state, x) with `n` random images."""
    fam = small_inception.FAMILY
    cfg = _config(fam, shape, width=width, **fields)
    params, state = fam.init(jax.random.key(0), cfg, None)
    return fam, cfg, params, state, jax.random.uniform(jax.random.key(1), (n, *shape))


def _count(family, cfg):
    params, _ = jax.eval_shape(lambda k: family.init(k, cfg, None), jax.random.key(0))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


# ------------------------------------------------------------------------------ parameter counts

def test_small_inception_has_the_published_parameter_count():
    fam = small_inception.FAMILY
    no_bn = _count(fam, _config(fam, (32, 32, 3), norm="none"))
    assert no_bn == small_inception.PARAMS_NO_BN_RGB == 1_649_402
    # With BN, every conv loses its bias (beta takes its role) and gains gamma and beta.
    conv_list, _ = layers.conv_layers(_config(fam, (32, 32, 3)).plan, 3)
    channels = sum(op.features for op, _ in conv_list)
    assert channels == 1_712
    assert _count(fam, _config(fam, (32, 32, 3))) == 1_649_402 - channels + 2 * channels


def _table_count(with_bn: bool) -> int:
    """BN-Inception's parameters counted by hand from the printed table (branch widths as
    printed), independently of the plan code."""
    total, c = 0, 3
    def conv(k, cin, cout):
        return k * k * cin * cout + (2 * cout if with_bn else cout)
    total += 7 * 7 * 3 * 8 + conv(1, 24, 64)           # separable 7x7/2: depthwise x8, then 1x1
    total += conv(1, 64, 64) + conv(3, 64, 192)
    c = 192
    for _, c1, r3, c3, rd, cd, _, proj in bn_inception.MODULES:
        total += (conv(1, c, c1) if c1 else 0) + conv(1, c, r3) + conv(3, r3, c3)
        total += conv(1, c, rd) + conv(3, rd, cd) + conv(3, cd, cd)
        total += conv(1, c, proj) if proj else 0
        c = c1 + c3 + cd + (proj if proj else c)
    assert c == 1024
    return total + c * 1000 + 1000


def test_bn_inception_parameter_count_against_the_stated_13_6m():
    fam = bn_inception.FAMILY
    with_bn = _count(fam, _config(fam, (224, 224, 3)))
    without = _count(fam, _config(fam, (224, 224, 3), norm="none"))
    assert with_bn == bn_inception.PARAMS_BN == _table_count(True)
    assert without == bn_inception.PARAMS_NO_BN == _table_count(False)
    # The documented gap: the printed table gives ~11.3M, not the paper's 13.6M.
    assert 0.8 < with_bn / bn_inception.PARAMS_STATED < 0.85


def test_bn_inception_module_widths_follow_the_documented_resolution():
    plan = _config(bn_inception.FAMILY, (224, 224, 3)).plan
    outs = [layers.conv_layers(plan[:5 + i + 1], 3)[1] for i in range(len(bn_inception.MODULES))]
    # 3a 3b 3c 4a 4b 4c 4d 4e 5a 5b: 4c/4d give 608 (not the printed 576), 4e passes 608 through.
    assert outs == [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]


def test_bn_inception_shapes_at_224():
    fam = bn_inception.FAMILY
    cfg = _config(fam, (224, 224, 3))
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)

    def forward(key, x):
        params, state = fam.init(key, cfg, None)
        return fam.apply(params, state, x, cfg=cfg, train=True)

    logits, state, inter = jax.eval_shape(forward, jax.random.key(0), x)
    assert logits.shape == (2, 1000)
    spatial = sorted({z.shape[1] for z in inter["preacts"]}, reverse=True)
    assert spatial == [112, 56, 28, 14, 7]
    assert inter["preacts"][0].shape == (2, 112, 112, 64)
    assert inter["preacts"][-1].shape == (2, 7, 7, 128)  # 5b's pool projection
    assert len(inter["bn_inputs"]) == len(inter["preacts"]) == len(state["bn"])


def test_bn_inception_trains_one_jitted_step_on_a_tiny_batch():
    fam = bn_inception.FAMILY
    cfg = _config(fam, (224, 224, 3), dropout=0.4)
    params, state = fam.init(jax.random.key(0), cfg, None)
    x = jax.random.uniform(jax.random.key(1), (2, 224, 224, 3))
    y = jnp.array([3, 999])

    @jax.jit
    def step(params, state, rng):
        def loss(p):
            logits, new, _ = fam.apply(p, state, x, cfg=cfg, train=True, rng=rng)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
        (value, new), grads = jax.value_and_grad(loss, has_aux=True)(params)
        params = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
        logits = fam.apply(params, new, x, cfg=cfg, train=False)[0]  # the trained net, eval mode
        return params, new, value, logits

    new_params, new_state, value, logits = step(params, state, jax.random.key(2))
    assert np.isfinite(float(value)) and abs(float(value) - np.log(1000)) < 2
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(new_params))
    assert not np.allclose(new_state["bn"][0]["mean"], state["bn"][0]["mean"])
    assert logits.shape == (2, 1000) and np.all(np.isfinite(logits))


# ------------------------------------------------------------------------ shapes, intermediates

@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_small_inception_shapes_and_intermediates(shape, norm):
    fam, cfg, params, state, x = _small(8, shape=shape, norm=norm)
    logits, new_state, inter = _apply(fam, cfg, True)(params, state, x)
    assert logits.shape == (8, 10)
    preacts = inter["preacts"]
    assert len(preacts) == 19  # 1 conv + 8 Inception modules x 2 + 2 downsamples x 1
    side = shape[0]
    assert preacts[0].shape == (8, side, side, scaled(96, 0.125))
    assert preacts[-1].shape == (8, side // 4, side // 4, scaled(160, 0.125))
    if norm == "batchnorm":
        assert [z.shape for z in inter["bn_inputs"]] == [z.shape for z in preacts]
        assert len(new_state["bn"]) == 19 and all("b" not in c for c in params["convs"])
    else:
        assert inter["bn_inputs"] == [] and new_state == {"bn": []}
        assert all("bn" not in c for c in params["convs"])


def test_conv_bn_normalizes_each_channel_over_batch_and_space():
    fam, cfg, params, state, x = _small(16, width=0.25)
    _, new_state, inter = _apply(fam, cfg, True)(params, state, x)
    for z, u, s_old, s_new in zip(inter["preacts"], inter["bn_inputs"], state["bn"],
                                  new_state["bn"]):
        z = np.asarray(z, np.float64)
        # BN output (gamma 1, beta 0 at init): mean 0, variance 1 per channel over N, H, W.
        np.testing.assert_allclose(z.mean((0, 1, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(z.var((0, 1, 2)), 1, atol=2e-3)
        # Running statistics move toward the per-channel moments over N, H, W (not per pixel).
        mean, var = batchnorm.moments(u)
        assert mean.shape == (u.shape[-1],)
        np.testing.assert_allclose(s_new["mean"], 0.99 * s_old["mean"] + 0.01 * mean, rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_allclose(s_new["var"], 0.99 * s_old["var"] + 0.01 * var, rtol=1e-5)


def test_the_nonlinearity_reads_the_recorded_preactivation():
    fam, cfg, params, state, x = _small(activation="sigmoid", norm="none")
    _, _, inter = _apply(fam, cfg, True)(params, state, x)
    # preacts[1] is the first module's 1x1 branch, fed by sigmoid(preacts[0]).
    h = jax.nn.sigmoid(inter["preacts"][0])
    expected = layers.conv(h, params["convs"][1]["w"]) + params["convs"][1]["b"]
    np.testing.assert_allclose(inter["preacts"][1], expected, rtol=1e-5, atol=1e-6)


def test_eval_mode_uses_and_keeps_the_running_statistics():
    fam, cfg, params, state, x = _small()
    _, trained, _ = _apply(fam, cfg, True)(params, state, x)
    _, same, _ = _apply(fam, cfg, False)(params, trained, x[:2])
    jax.tree.map(np.testing.assert_array_equal, same, trained)


def test_dropout_only_in_training_with_an_rng():
    fam, cfg, params, state, x = _small(dropout=0.5)
    assert cfg.needs_rng and not _config(fam, (28, 28, 1), width=0.125).needs_rng
    train_fn, eval_fn = _apply(fam, cfg, True), _apply(fam, cfg, False)
    def run(train, rng):
        return (train_fn if train else eval_fn)(params, state, x, rng)[0]
    plain = run(True, None)
    np.testing.assert_array_equal(run(False, jax.random.key(3)), run(False, None))
    assert not np.allclose(run(True, jax.random.key(3)), plain)
    np.testing.assert_array_equal(run(True, jax.random.key(3)), run(True, jax.random.key(3)))


@pytest.mark.parametrize("kind,expected", [("gaussian", 0.5), ("he", 0.5 * np.sqrt(2 / 144)),
                                           ("lecun", 0.5 / np.sqrt(144)),
                                           ("glorot", 0.5 * np.sqrt(2 / (144 + 144)))])
def test_conv_weights_use_the_fans_of_a_conv(kind, expected):
    """A 3x3 conv from 16 to 16 channels: fan_in = fan_out = 9 * 16; biases start at 0."""
    plan = (layers.Conv(16, 3), layers.Conv(16, 3))
    params, _ = jax.jit(lambda k: layers.init(k, plan, 16, 10, use_bn=False, init_kind=kind,
                                              gain=0.5))(jax.random.key(0))
    w = np.asarray(params["convs"][1]["w"])
    assert abs(w.std() / expected - 1) < 0.05
    np.testing.assert_array_equal(params["convs"][1]["b"], 0)
    assert not np.allclose(w, params["convs"][0]["w"])  # each layer its own draws


def test_init_gain_can_be_traced_for_vmap():
    fam, cfg, *_ = _small()
    params = jax.vmap(lambda g: fam.init(jax.random.key(0), cfg, {"init_std": g})[0])(
        jnp.array([1.0, 3.0]))
    w = params["convs"][4]["w"]
    np.testing.assert_allclose(w[1], 3 * w[0], rtol=1e-5)


# ------------------------------------------------------------------------------ the conv's VJP

@pytest.mark.parametrize("size,kernel,stride", [(28, 3, 1), (28, 3, 2), (13, 3, 2), (7, 1, 1),
                                                (14, 1, 2), (20, 7, 2)])
def test_conv_gradients_equal_jax_own(size, kernel, stride):
    x = jax.random.normal(jax.random.key(0), (3, size, size, 5))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 5, 4))
    ref = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out, pull = jax.vjp(lambda x, w: layers.conv(x, w, stride), x, w)
    ref_out, ref_pull = jax.vjp(ref, x, w)
    np.testing.assert_array_equal(out, ref_out)
    g = jax.random.normal(jax.random.key(2), out.shape)
    for ours, theirs in zip(pull(g), ref_pull(g)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ flax.linen parity

@pytest.mark.parametrize("norm", ["batchnorm", "none"])
def test_functional_model_equals_the_linen_model(norm):
    """The whole small Inception (conv modules, Inception modules, downsampling, pooling, dense
    head) against the same network from nn.Conv / nn.BatchNorm / nn.max_pool / nn.Dense."""
    fam, cfg, params, state, x = _small(6, norm=norm)
    net = linen.InceptionLinen(cfg.plan, use_bn=cfg.use_bn)
    variables = linen.to_linen(params, state, cfg.plan, 1)
    ours, new_state, _ = _apply(fam, cfg, True)(params, state, x)
    if cfg.use_bn:
        theirs, updates = jax.jit(lambda v, x: net.apply(v, x, train=True,
                                                         mutable=["batch_stats"]))(variables, x)
        ours_stats = linen.to_linen(params, new_state, cfg.plan, 1)["batch_stats"]
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                     ours_stats, updates["batch_stats"])
    else:
        theirs = jax.jit(lambda v, x: net.apply(v, x, train=True))(variables, x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    evals = (_apply(fam, cfg, False)(params, new_state, x)[0],
             jax.jit(lambda v, x: net.apply(v, x, train=False))(
                 linen.to_linen(params, new_state, cfg.plan, 1), x))
    np.testing.assert_allclose(*evals, rtol=1e-5, atol=1e-6)


def test_functional_gradients_equal_the_linen_model():
    fam, cfg, params, state, x = _small(6)
    y = jnp.arange(6) % 10
    net = linen.InceptionLinen(cfg.plan)
    xent = optax.softmax_cross_entropy_with_integer_labels

    def ours(p):
        return xent(fam.apply(p, state, x, cfg=cfg, train=True)[0], y).mean()

    def theirs(p):
        variables = linen.to_linen(p, state, cfg.plan, 1)
        return xent(net.apply(variables, x, train=True, mutable=["batch_stats"])[0], y).mean()

    g_ours, g_theirs = jax.jit(jax.grad(ours))(params), jax.jit(jax.grad(theirs))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 g_ours, g_theirs)


def test_separable_conv_and_average_pooling_equal_linen():
    """The two layer types only BN-Inception uses: the separable first conv and the average-pool
    branch (padding excluded from the average), one module each, against linen."""
    plan = (layers.Conv(8, 7, 2, depth_multiplier=2),
            layers.Mixed(((layers.Conv(4, 1),), (layers.Pool("avg", 3, 1), layers.Conv(4, 1)),
                          (layers.Pool("max", 3, 1),))))
    params, state = layers.init(jax.random.key(0), plan, 3, 10, use_bn=True, init_kind="he",
                                gain=1.0)
    x = jax.random.uniform(jax.random.key(1), (2, 15, 15, 3))
    kw = dict(activation="relu", use_bn=True, train=True, bn_momentum=0.99, bn_epsilon=1e-5)
    ours = jax.jit(lambda p, s, x: layers.apply(p, s, x, plan, **kw)[0])(params, state, x)
    theirs = jax.jit(lambda v, x: linen.InceptionLinen(plan).apply(
        v, x, train=True, mutable=["batch_stats"])[0])(linen.to_linen(params, state, plan, 3), x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ config checks

@pytest.mark.parametrize("field,value,words", [
    ("width", 0.0, "model.width=0.0 is invalid"), ("width", "wide", "width multiplier"),
    ("dropout", 1.0, "model.dropout=1.0 is invalid"), ("num_classes", 1, "num_classes"),
    ("activation", "gelu", "model.activation='gelu' is unknown"),
    ("tracked_units", (0, 999), "model.tracked_units"), ("bn_noise", 1, "model.bn_noise")])
def test_validate_names_the_field_in_one_line(field, value, words):
    model = models.default_config("small_inception").to_dict()
    model[field] = list(value) if isinstance(value, tuple) else value
    model["tracked_units"] = list(model["tracked_units"]) if field != "tracked_units" else \
        model[field]
    with pytest.raises(ValueError) as err:
        small_inception.FAMILY.validate(model)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_families_are_registered():
    assert {"small_inception", "bn_inception"} <= set(models.names())
    assert models.get("bn_inception").fields().num_classes == 1000
