"""Throughput of the small Inception with BN: our trainer against a standard flax.linen loop.

What is measured: training images per second of `small_inception` with BN (ReLU, batch 32, SGD
with momentum 0.9 at lr 0.01, no dropout, no L2; width `--width`) on the embedded MNIST, for

1. "trainer": our compiled trainer as the runner drives it (`train.chunk_runner`): one
   `lax.scan` of `--chunk` steps per jitted call, with the per-step loss and tracked percentiles
   computed inside it;
2. "flax.linen loop": the same network from `nn.Conv` + `nn.BatchNorm` + `nn.max_pool` + `nn.Dense`
   (`bn_experiments.models.inception.linen.InceptionLinen`), `optax.sgd(0.01, momentum=0.9)`, a
   jitted `train_step(state, batch_indices)` called from Python once per step, which gathers its
   batch from the data on the device and returns the loss (one block at the end).

Both start from the same weights. Everything runs in one process; each round measures both, the
order alternating, so a machine loaded by other jobs slows them alike; the report gives the median
over rounds and the ratio trainer / linen (the issue's bar: the trainer must not be slower).
Compilation is excluded (a warm-up call each). Why the trainer needs its own conv gradient: inside
`lax.scan`, XLA's CPU backend runs JAX's own conv gradients 15-35x slower (see
`bn_experiments.models.inception.layers._conv`); the linen loop, outside any loop, does not pay it.

Usage: python scripts/bench_inception.py [--width 0.25] [--chunk 20] [--repeats 3]
                                         [--out results/bench/bench_inception_cpu.txt]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import time

import jax
import optax
from bn_experiments.configs import inception_variants

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import train
from bn_experiments.models.inception import linen

BATCH, LR, MOMENTUM = 32, 0.01, 0.9


def _static(width: float, chunk: int, ds):
    cfg = inception_variants.base("bench_inception")
    cfg.model.width, cfg.model.norm, cfg.model.dropout = width, "batchnorm", 0.0
    cfg.optimizer.weight_decay, cfg.optimizer.schedule = 0.0, "constant"
    cfg.learning_rate, cfg.batch_size, cfg.steps, cfg.eval_every = LR, BATCH, chunk, chunk
    return config_lib.runs(cfg, input_shape=ds.input_shape, num_train=ds.num_train)[0]


def trainer(run, ds):
    """A callable that trains one chunk with our trainer (and blocks), and its steps per call."""
    program = train.make_program(run.static, ds)
    numbers = train.numbers_to_arrays(run.numbers)
    carry = jax.jit(program.init)(numbers)
    chunk = train.chunk_runner(program)
    state = {"carry": carry}

    def call():
        state["carry"], metrics = chunk(state["carry"], numbers)
        jax.block_until_ready(metrics["train_loss"])

    return call, carry


def linen_loop(run, ds, carry, steps: int):
    """The same network and optimizer as a flax.linen model in a per-step jitted loop."""
    cfg = run.static.model
    net = linen.InceptionLinen(cfg.plan, num_classes=cfg.num_classes, use_bn=True)
    variables = linen.to_linen(carry["params"], carry["bn_state"], cfg.plan, ds.input_shape[-1])
    tx = optax.sgd(LR, momentum=MOMENTUM)
    state = {"params": variables["params"], "stats": variables["batch_stats"],
             "opt": tx.init(variables["params"])}
    x_train, y_train = ds.x_train, ds.y_train

    @jax.jit
    def train_step(state, idx):
        x, y = x_train[idx], y_train[idx]

        def loss_fn(params):
            logits, updates = net.apply({"params": params, "batch_stats": state["stats"]}, x,
                                        train=True, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, updates["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "stats": stats,
                "opt": opt}, loss

    indices = jax.random.randint(jax.random.key(0), (steps, BATCH), 0, x_train.shape[0])
    box = {"state": state}

    def call():
        losses = []
        for i in range(steps):
            box["state"], loss = train_step(box["state"], indices[i])
            losses.append(loss)
        jax.block_until_ready(losses)

    return call


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--chunk", type=int, default=20, help="steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)

    ds = data_lib.to_device(data_lib.load("mnist_embedded"))
    run = _static(args.width, args.chunk, ds)
    ours, carry = trainer(run, ds)
    theirs = linen_loop(run, ds, carry, args.chunk)
    ours(), theirs()  # compile both
    rates = {"trainer": [], "flax.linen loop": []}
    for r in range(args.repeats):
        pair = [("trainer", ours), ("flax.linen loop", theirs)]
        for name, fn in (pair if r % 2 == 0 else pair[::-1]):
            t = time.perf_counter()
            fn()
            rates[name].append(args.chunk * BATCH / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["trainer"] / med["flax.linen loop"]
    params = sum(int(x.size) for x in jax.tree.leaves(carry["params"]))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        (f"bench_inception: small_inception with BN, width {args.width:g} ({params:,} "
         f"parameters), batch {BATCH}, SGD momentum {MOMENTUM}, 28x28x1 (embedded MNIST)"),
        (f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, {os.cpu_count()} CPUs, "
         f"load average {load}; jax {jax.__version__}, python {platform.python_version()}"),
        f"{args.repeats} rounds of {args.chunk} steps each (order alternating), compile excluded",
        "",
    ]
    for name, vals in rates.items():
        lines.append(f"  {name:16s} {med[name]:8.1f} images/s  (median; min {min(vals):.1f}, "
                     f"max {max(vals):.1f})")
    verdict = "PASS" if ratio >= 1.0 else "MISS"
    lines += ["", f"trainer / flax.linen loop: {ratio:.2f}x  [{verdict}: not slower]"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
