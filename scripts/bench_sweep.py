"""Benchmark: a 16-point same-shape sweep on every device against the one-device vmapped program.

Three ways to train the same 16 points of the Figure 1 MLP (learning rates 0.01..1, one norm):

- one device, one program: the 16 points vmapped as ONE program (points_per_program=16) on one
  device: what the runner did before it used several devices;
- every device: the points split into one program per device (points_per_program=16/N), trained
  side by side, as the runner places them (bn_experiments.placement, bn_experiments.waves);
- one device, those programs one after the other: the same programs as "every device" on one
  device (separates what the devices bring from what the narrower programs change).

Each side runs the trainer's compiled chunks (a `lax.scan` of `eval_every` SGD steps, the
divergence checked once per chunk, `train.chunk_runner`), compilation excluded (a warm-up chunk
each), the three alternated in every round; the report gives the median throughput (point-steps
per second) and the ratios. On CPU the device count is one per core unless --devices says
otherwise. XLA:CPU runs each of these programs mostly on one thread, but runs independent
operations of a program concurrently: alone on 2 cores, the one-device program is ~1.33x as fast
as pinned to one core (`taskset -c 0`), which bounds the "every device" side at ~2 / 1.33 = 1.5x
it on a 2-core CPU (results/bench/bench_sweep_cpu.txt).

    python scripts/bench_sweep.py [--points 16] [--chunks 3] [--repeats 3] [--norm batchnorm]
                                  [--devices N] [--out results/bench/bench_sweep_cpu.txt]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import statistics
import time

import bench_report  # this script's folder is on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=3, help="chunks of 500 steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--norm", default="batchnorm", choices=("none", "batchnorm"))
    parser.add_argument("--devices", type=int, default=None, help="default: one per CPU core")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="also write the report here")
    args = parser.parse_args()

    from bn_experiments import devices
    devices.configure(args.devices)
    import jax
    import jax.numpy as jnp

    from bn_experiments import data as data_lib, placement, sweep, train
    from bn_experiments.configs import fig1_mnist

    devs = jax.local_devices()
    if args.points % len(devs):
        raise SystemExit(f"--points {args.points} must be a multiple of the {len(devs)} devices")
    cfg = fig1_mnist.get_config()
    lrs = tuple(float(x) for x in jnp.geomspace(0.01, 1.0, args.points))
    cfg.grid = (("model.norm", (args.norm,)), ("learning_rate", lrs))
    ds = data_lib.to_device(data_lib.load(cfg.data.source))
    runs = sweep.expand(cfg, num_train=ds.num_train)
    program = train.make_program(runs[0].static, ds)
    init, chunk = jax.jit(jax.vmap(program.init)), train.chunk_runner(program, batched=True)

    def numbers(part, device):
        return placement.put(jax.tree.map(lambda *xs: jnp.stack(xs), *[
            train.numbers_to_arrays(r.numbers) for r in part]), device)

    width = args.points // len(devs)
    parts = [runs[i:i + width] for i in range(0, args.points, width)]
    # Programs per device: the data and the program on that device, as the runner builds them.
    per_device = []
    for d, part in zip(devs, parts):
        p = train.make_program(runs[0].static, placement.put_data(ds, d))
        per_device.append((jax.jit(jax.vmap(p.init)), train.chunk_runner(p, batched=True),
                           numbers(part, d)))
    whole = numbers(runs, None)

    def warm(init_fn, chunk_fn, nums):
        carry, _ = chunk_fn(init_fn(nums), nums)  # compiles on the first call
        return jax.block_until_ready(carry)

    def chunks(carry, chunk_fn, nums):
        for _ in range(args.chunks):
            carry, m = chunk_fn(carry, nums)
        return jax.block_until_ready((carry, m))

    def timed(programs, pool=None) -> float:
        """Warm-up chunks first (not timed), then `args.chunks` chunks of every program: side by
        side in threads with a pool, else one after the other."""
        run = (lambda f, items: [f(*x) for x in items]) if pool is None else (
            lambda f, items: [x.result() for x in [pool.submit(f, *i) for i in items]])
        carries = run(warm, programs)
        t = time.perf_counter()
        run(chunks, [(c, p[1], p[2]) for c, p in zip(carries, programs)])
        return time.perf_counter() - t

    pool = concurrent.futures.ThreadPoolExecutor(len(devs))
    in_turn = [(init, chunk, numbers(part, None)) for part in parts]
    contenders = {"one device, one program": lambda: timed([(init, chunk, whole)]),
                  f"{len(devs)} devices side by side": lambda: timed(per_device, pool),
                  "one device, those programs in turn": lambda: timed(in_turn)}
    times = {k: [] for k in contenders}
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for r in range(args.repeats):
        order = list(contenders)[r % 3:] + list(contenders)[:r % 3]
        for k in order:
            times[k].append(contenders[k]())
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"{k} {times[k][-1]:.2f} s"
                                                            for k in contenders), flush=True)
    pool.shutdown()
    point_steps = args.points * args.chunks * cfg.eval_every
    med = {k: statistics.median(v) for k, v in times.items()}
    one, many, turn = (med[k] for k in contenders)
    lines = [
        f"bench_sweep: {args.points} points of the Figure 1 MLP (norm={args.norm}, learning rates "
        f"0.01..1), {args.chunks * cfg.eval_every} steps each, median of {args.repeats} rounds "
        f"(alternated), compilation excluded",
        f"devices: {len(devs)} x {devs[0].device_kind} ({devs[0].platform}), {devices.cores()} "
        f"cores, jax {jax.__version__}; load average {load_start} at start, "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " at end",
        "",
    ]
    for k in contenders:
        lines.append(f"  {k:38s}: {point_steps / med[k]:8.0f} point-steps/s ({med[k]:.2f} s; "
                     f"rounds {', '.join(f'{t:.2f}' for t in times[k])})")
    lines += [
        f"  all devices / one-device program (points_per_program {args.points} -> {width}): "
        f"{one / many:.2f}x (bar on a 2-core CPU: >= 1.8x) -> "
        f"{'PASS' if one / many >= 1.8 else 'MISS'}",
        f"  all devices / the same programs in turn on one device: {turn / many:.2f}x",
    ]
    bench_report.emit(lines, args.out)


if __name__ == "__main__":
    main()
