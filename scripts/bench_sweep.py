"""Benchmark: a grid of same-shape points as ONE vmapped program vs the same points run one by one.

Both sides run the trainer's compiled chunk (a `lax.scan` of `eval_every` SGD steps) on the
Figure 1 MLP, in this process, compilation excluded (a warm-up chunk each), alternating the two in
every repeat round; the report gives the median throughput (point-steps per second) and the ratio.
On a 2-core CPU the matmuls already fill the cores, so vmapping mostly saves per-step overhead; on
a GPU the vmapped program fills the device and the ratio is much larger.

    python scripts/bench_sweep.py [--points 16] [--chunks 4] [--repeats 3] [--norm batchnorm]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from bn_experiments import data as data_lib, sweep, train
from bn_experiments.configs import fig1_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=4, help="chunks of 500 steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--norm", default="batchnorm", choices=("none", "batchnorm"))
    args = parser.parse_args()

    cfg = fig1_mnist.get_config()
    cfg.runs = ()
    lrs = tuple(float(x) for x in jnp.geomspace(0.01, 1.0, args.points))
    cfg.grid = (("model.norm", (args.norm,)), ("learning_rate", lrs))
    data = data_lib.to_device(data_lib.load(cfg.data.source))
    runs = sweep.expand(cfg, num_train=data.num_train)
    program = train.make_program(runs[0].static, data)
    numbers = [train.numbers_to_arrays(r.numbers) for r in runs]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *numbers)

    # Chunks as the runner trains them (train.chunk_runner: divergence checked once per chunk).
    v_init, v_chunk = jax.jit(jax.vmap(program.init)), train.chunk_runner(program, batched=True)
    s_init, s_chunk = jax.jit(program.init), train.chunk_runner(program)

    def vmapped() -> float:
        carry = v_init(stacked)
        carry, _ = v_chunk(carry, stacked)  # warm-up (compiles on the first call)
        jax.block_until_ready(carry)
        t = time.perf_counter()
        for _ in range(args.chunks):
            carry, m = v_chunk(carry, stacked)
        jax.block_until_ready((carry, m))
        return time.perf_counter() - t

    def sequential() -> float:
        total = 0.0
        for n in numbers:
            carry = s_init(n)
            carry, _ = s_chunk(carry, n)
            jax.block_until_ready(carry)
            t = time.perf_counter()
            for _ in range(args.chunks):
                carry, m = s_chunk(carry, n)
            jax.block_until_ready((carry, m))
            total += time.perf_counter() - t
        return total

    point_steps = args.points * args.chunks * cfg.eval_every
    v_times, s_times = [], []
    for _ in range(args.repeats):
        v_times.append(vmapped())
        s_times.append(sequential())
    v, s = statistics.median(v_times), statistics.median(s_times)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"{args.points} points of the Figure 1 MLP (norm={args.norm}), "
          f"{args.chunks * cfg.eval_every} steps each, median of {args.repeats} alternating repeats")
    print(f"  vmapped program : {point_steps / v:10.0f} point-steps/s ({v:.2f} s)")
    print(f"  sequential runs : {point_steps / s:10.0f} point-steps/s ({s:.2f} s)")
    print(f"  ratio vmapped / sequential: {s / v:.2f}x (bar on a 2-core CPU: >= 1.0)")


if __name__ == "__main__":
    main()
