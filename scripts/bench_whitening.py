"""Benchmark: wall-clock time of a training step with BN, group whitening and full whitening.

The `whitening_cost` experiment counts operations (deterministic, in summary.json); this script
times them. For each width (every hidden layer of Figure 1's 3-layer sigmoid MLP that wide) and
each normalization it compiles one SGD step (forward, backward through the statistics, update;
batch 60), warms it up, then times up to `--steps` steps (about `--budget` seconds' worth) in
each of `--repeats` rounds, the normalizations alternated within a round; the report gives the
median time per step and its ratio to BN's at the same width. One device (one core),
compilation excluded.

    python scripts/bench_whitening.py [--widths 100 200 400 800] [--steps 50] [--budget 2]
                                      [--repeats 3] [--out results/bench/bench_whitening_cpu.txt]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import time

import bench_report  # this script's folder is on sys.path

ARMS = (("BN", 0), ("group whitening (20)", 20), ("full whitening", -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[100, 200, 400, 800])
    parser.add_argument("--steps", type=int, default=50, help="most steps per timing")
    parser.add_argument("--budget", type=float, default=2.0,
                        help="seconds per timing: slow steps are timed fewer times (at least 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="also write the report here")
    args = parser.parse_args()

    from bn_experiments import devices
    devices.configure(1)
    import jax
    import jax.numpy as jnp

    from bn_experiments.models import mlp

    def step_fn(cfg):
        def loss(params, state, x, y):
            logits, new_state, _ = mlp.apply(params, state, x, cfg=cfg, train=True)
            ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
            return ce, new_state

        @jax.jit
        def step(params, state, x, y):
            (_, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params, state, x, y)
            return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), new_state
        return step

    key = jax.random.key(0)
    x = jax.random.normal(key, (args.batch, 784))
    y = jax.random.randint(key, (args.batch,), 0, 10)
    load = os.getloadavg()
    lines = [f"bench_whitening: one SGD step of the 3-layer sigmoid MLP, batch {args.batch}, "
             f"median of {args.repeats} rounds of up to {args.steps} steps or about "
             f"{args.budget:g} s (normalizations alternated), compilation excluded",
             f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, one device; load "
             f"average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start", ""]
    for width in args.widths:
        programs = {}
        for name, group in ARMS:
            cfg = mlp.MLPConfig(widths=(width,) * 3, norm="batchnorm",
                                bn_whiten_group=width if group < 0 else group)
            params, state = mlp.init(key, cfg)
            step = step_fn(cfg)
            jax.block_until_ready(step(params, state, x, y))
            start = time.perf_counter()
            jax.block_until_ready(step(params, state, x, y))
            one = time.perf_counter() - start   # wide whitened steps take seconds: time fewer
            steps = max(2, min(args.steps, int(args.budget / max(one, 1e-6))))
            programs[name] = (step, params, state, steps)
        times = {name: [] for name, _ in ARMS}
        for _ in range(args.repeats):
            for name, (step, params, state, steps) in programs.items():
                start = time.perf_counter()
                for _ in range(steps):
                    params, state = step(params, state, x, y)
                jax.block_until_ready(params)
                times[name].append((time.perf_counter() - start) / steps)
        base = statistics.median(times["BN"])
        for name, _ in ARMS:
            t = statistics.median(times[name])
            lines.append(f"  width {width:5d}  {name:22s}: {t * 1e3:10.3f} ms/step  "
                         f"({t / base:7.1f}x BN; {programs[name][3]} steps per round)")
        lines.append("")
    load = os.getloadavg()
    lines.append(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")
    bench_report.emit(lines, args.out)


if __name__ == "__main__":
    main()
