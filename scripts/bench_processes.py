"""Data-parallel training on one machine: one process against two, one device against two.

What is measured: steady-state SGD steps per second of the Figure 1 MLP with BN (784-100-100-100-10
sigmoid, the embedded MNIST, plain SGD) trained data parallel (bn_experiments.data_parallel), in
each layout:

    1 process x 1 device    the trainer alone (`train.make_program`): the baseline
    1 process x 2 devices   the batch split over 2 CPU devices of one process (XLA's in-process
                            collectives)
    2 processes x 1 device  two processes on 127.0.0.1 (jax.distributed, gloo collectives over TCP)

each with BN statistics synchronized over the devices and per device; and the wall time of each
process from its start to its first trained chunk (import, jax.distributed, compilation): the
fixed cost of a layout. Each layout runs in fresh processes (a process's device count and its
process group are fixed when JAX starts); the layouts are measured one after the other, in a
rotated order each repeat, and the report gives the median over repeats.

Why: the issue asks for the scaling and the overhead of two processes against one on this machine.
A CPU step of this MLP is tens of microseconds of matmuls; splitting its batch adds an all-reduce
of the gradient (and, synchronized, of every BN layer's moments) per step, which on one machine
costs a memory copy between devices and, between processes, a TCP round trip. So the expectation
is a slowdown at the paper's batch of 60, and the report says by how much.

Usage: python scripts/bench_processes.py [--batch 60] [--steps 2000] [--steps-multi 100]
           [--repeats 2]
           [--out results/bench/bench_processes_cpu.txt]
Run it alone on the machine (the shared CPU queue: flock /tmp/cpu.lock ...).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import time

LAYOUTS = [(1, 1, None), (1, 2, True), (1, 2, False), (2, 1, True), (2, 1, False)]


def worker(args) -> None:
    """One process of one layout: train, print {"steps_per_s", "ready_s"} (process 0)."""
    t0 = time.perf_counter()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
    import functools

    import jax

    from bn_experiments import distributed
    distributed.initialize(distributed.settings())
    from bn_experiments import config as config_lib, data as data_lib, data_parallel, train
    from bn_experiments.configs import default

    cfg = default.get_config()
    cfg.steps, cfg.eval_every, cfg.checkpoint_every = args.steps, args.steps, 0
    cfg.batch_size, cfg.learning_rate = args.batch, 0.05
    cfg.model.norm = "batchnorm"
    run = config_lib.runs(cfg)[0]
    ds = data_lib.load(cfg.data.source)
    if args.bn_sync is None:
        program = train.make_program(run.static, data_lib.to_device(ds))
    else:
        program = data_parallel.make_program(run.static, ds, bn_sync=args.bn_sync == "sync")
    numbers = train.numbers_to_arrays(run.numbers)
    chunk = jax.jit(functools.partial(program.fast_chunk, length=args.steps))
    carry = jax.jit(program.init)(numbers)
    carry = jax.block_until_ready(chunk(carry, numbers)[0])
    ready = time.perf_counter() - t0
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        carry = jax.block_until_ready(chunk(carry, numbers)[0])
        rates.append(args.steps / (time.perf_counter() - t))
    if jax.process_index() == 0:
        print(json.dumps({"steps_per_s": statistics.median(rates), "ready_s": ready}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(processes: int, devices: int, bn_sync, args) -> dict:
    steps = args.steps if processes == 1 else args.steps_multi
    cmd = [sys.executable, __file__, "--worker", "--local-devices", str(devices),
           "--batch", str(args.batch), "--steps", str(steps)]
    if bn_sync is not None:
        cmd += ["--bn-sync", "sync" if bn_sync else "per-device"]
    port = _free_port()
    procs = []
    for i in range(processes):
        env = dict(os.environ)
        if processes > 1:
            env.update(BN_EXP_COORDINATOR=f"127.0.0.1:{port}", BN_EXP_NUM_PROCESSES=str(processes),
                       BN_EXP_PROCESS_ID=str(i))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"layout {processes}x{devices} failed:\n{err[-2000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def name(processes: int, devices: int, bn_sync) -> str:
    bn = "" if bn_sync is None else (", BN synchronized" if bn_sync else ", BN per device")
    return (f"{processes} process{'' if processes == 1 else 'es'} x "
            f"{devices} device{'' if devices == 1 else 's'}{bn}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--local-devices", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--bn-sync", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--steps", type=int, default=2000, help="steps per timed chunk, one process")
    ap.add_argument("--steps-multi", type=int, default=100,
                    help="steps per timed chunk, two processes (each step waits on TCP)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="results/bench/bench_processes_cpu.txt")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    results = {layout: [] for layout in LAYOUTS}
    for r in range(args.repeats):
        order = LAYOUTS[r % len(LAYOUTS):] + LAYOUTS[:r % len(LAYOUTS)]
        for layout in order:
            results[layout].append(measure(*layout, args))
            print(name(*layout), results[layout][-1], flush=True)
    base = statistics.median(m["steps_per_s"] for m in results[LAYOUTS[0]])
    lines = [f"bench_processes: Figure 1 MLP with BN, batch {args.batch} "
             f"({args.batch // 2} per device when split), {args.steps} (one process) and "
             f"{args.steps_multi} (two) steps per timed chunk, "
             f"median of {args.repeats} repeats x 3 chunks",
             f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"load average {os.getloadavg()[0]:.1f}", ""]
    for layout in LAYOUTS:
        rate = statistics.median(m["steps_per_s"] for m in results[layout])
        ready = statistics.median(m["ready_s"] for m in results[layout])
        lines.append(f"{name(*layout):46s} {rate:8.0f} steps/s  x{rate / base:5.2f} of 1x1   "
                     f"start to first chunk {ready:5.1f} s")
    text = "\n".join(lines) + "\n"
    print(text)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
