"""Where the time of a `bn-exp run` goes: training steps against everything else.

Runs `runner.train_and_evaluate` in this process (as `bn-exp run` does, devices set first) with
timers around its phases, and prints how much of the wall time, from the start of this script,
is spent outside training steps: imports, loading the data, compilation, evaluations,
checkpoints, writing the workdir, figures. "Training steps" is the time the steps would take at
the program's steady-state rate (its chunks after the first of each length, which compiles):
for programs trained side by side, the slowest of them, wave by wave. Compilation is cached on
disk as by `bn-exp run` (bn_experiments.devices.compilation_cache): point
BN_EXP_COMPILATION_CACHE at an empty folder for a cold run. The timers block on each
chunk's and evaluation's results (the runner waits for them anyway), so the run is timed as it
runs; nothing it computes changes.

    python scripts/profile_run.py [--devices N] [--out FILE] -- [bn-exp run flags]
    e.g. python scripts/profile_run.py --out results/bench/overhead_fig1_cpu.txt -- \\
        --config fig1_mnist --config.steps=10000 \\
        --config.grid='(("model.norm",("none","batchnorm")),)'
"""
from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import collections  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

import bench_report  # noqa: E402 (this script's folder is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=None,
                        help="CPU devices (default: as `bn-exp run`: one per core)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="also write the report here")
    parser.add_argument("run_flags", nargs=argparse.REMAINDER, help="bn-exp run flags, after --")
    args = parser.parse_args()
    flags = [f for f in args.run_flags if f != "--"]

    try:
        from bn_experiments import devices
    except ImportError:  # a version of the package before it used several devices: one device
        devices = None
    else:
        devices.configure(args.devices)
        devices.compilation_cache()  # as `bn-exp run`: BN_EXP_COMPILATION_CACHE=off or a folder
    import jax
    from jax import monitoring

    from bn_experiments import checkpoint as checkpoint_lib, cli, experiments, runner, summary
    from bn_experiments import train, workdir as workdir_lib
    t_imports = time.perf_counter() - T0

    lock = threading.Lock()
    spent: dict[str, float] = collections.defaultdict(float)
    compile_events: dict[str, float] = collections.defaultdict(float)
    chunks: list[tuple[int, int, int, float, bool]] = []  # wave, runner, length, seconds, first
    wave = [0]

    def add(name: str, seconds: float) -> None:
        with lock:
            spent[name] += seconds

    def timed(name: str, fn, block: bool = False):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            if block:
                jax.block_until_ready(out)
            add(name, time.perf_counter() - t)
            return out
        return wrapper

    monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compile_events.__setitem__(event, compile_events[event] + secs)
        if event.startswith("/jax/core/compile") else None)

    real_chunk_runner, runner_ids = train.chunk_runner, iter(range(10**9))

    def chunk_runner(program, batched=False):
        run, me, seen = real_chunk_runner(program, batched), next(runner_ids), set()

        def timed_run(carry, numbers, length=None):
            t = time.perf_counter()
            out = run(carry, numbers, length=length)
            jax.block_until_ready(out)
            steps = out[1]["train_loss"].shape[-1]  # `length`, or eval_every for None
            with lock:
                chunks.append((wave[0], me, steps, time.perf_counter() - t, length not in seen))
                seen.add(length)
            return out
        return timed_run
    train.chunk_runner = chunk_runner

    # The evaluation (test set, ICS statistics, the probe) of every chunk: in `compiled`.
    owner = sys.modules.get("bn_experiments.loop") or runner
    name = "compiled" if hasattr(owner, "compiled") else "_compiled"
    real_compiled = getattr(owner, name)

    def compiled(*a, **k):
        fns = list(real_compiled(*a, **k))
        fns[2] = timed("evaluation", fns[2], block=True)
        fns[3] = timed("evaluation", fns[3], block=True)
        fns[4] = timed("population statistics (Algorithm 2)", fns[4], block=True)
        return tuple(fns)
    setattr(owner, name, compiled)

    waves = sys.modules.get("bn_experiments.waves")
    if waves is not None:  # each wave's chunks are one critical path
        real_wave = waves.train_wave

        def train_wave(*a, **k):
            wave[0] += 1
            return real_wave(*a, **k)
        waves.train_wave = train_wave
    else:
        real_runs = runner.train_runs

        def train_runs(*a, **k):
            wave[0] += 1
            return real_runs(*a, **k)
        runner.train_runs = train_runs

    checkpoint_lib.Checkpointer.save = timed("checkpoints", checkpoint_lib.Checkpointer.save)
    workdir_lib.Workdir.save_point = timed("workdir writes", workdir_lib.Workdir.save_point)
    workdir_lib.Workdir.write_curves = timed("workdir writes", workdir_lib.Workdir.write_curves)
    summary.write = timed("workdir writes", summary.write)
    runner.summary_lib.write = summary.write
    experiments.draw_figures = timed("figures", experiments.draw_figures)
    runner.experiments.draw_figures = experiments.draw_figures
    workdir_lib.git_commit = timed("provenance (git, versions)", workdir_lib.git_commit)
    workdir_lib.machine = timed("provenance (git, versions)", workdir_lib.machine)
    runner._plan = timed("config check, data load", runner._plan)

    opts = cli.parse_args(flags)
    cfg = cli._config(opts)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = opts.workdir or os.path.join(tmp, "run")
        t = time.perf_counter()
        runner.train_and_evaluate(cfg, workdir, restart=True, progress=False)
        t_run = time.perf_counter() - t
    wall = time.perf_counter() - T0

    # Steady-state seconds per step of each chunk runner (its chunks after the first per length).
    per_runner: dict[int, list] = collections.defaultdict(list)
    for w, r, length, secs, first in chunks:
        per_runner[r].append((w, length, secs, first))
    critical: dict[int, float] = collections.defaultdict(float)
    rates = []
    for r, rows in per_runner.items():
        steady = [(n, s) for _, n, s, first in rows if not first]
        if not steady:
            continue
        per_step = sum(s for _, s in steady) / sum(n for n, _ in steady)
        rates.append(1 / per_step)
        by_wave: dict[int, int] = collections.defaultdict(int)
        for w, n, _, _ in rows:
            by_wave[w] += n
        for w, n in by_wave.items():
            critical[w] = max(critical[w], n * per_step)
    train_time = sum(critical.values())
    chunk_time = sum(s for *_, s, _ in chunks)
    first_chunks = sum(s for *_, s, first in chunks if first)
    compile_total = sum(compile_events.values())

    out = []
    p = out.append
    dev = jax.local_devices()
    p(f"profile_run: bn-exp run {' '.join(flags)}")
    cache = devices.describe().get("compilation_cache") if devices else None
    p(f"devices: {len(dev)} x {dev[0].device_kind} ({dev[0].platform}); jax {jax.__version__}; "
      f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; compilation cache: "
      f"{cache or 'off'}")
    p(f"wall time from the start of the process: {wall:.2f} s (train_and_evaluate {t_run:.2f} s)")
    p(f"training steps at the steady-state rate (critical path over {len(critical)} wave(s), "
      f"{', '.join(f'{x:.0f}' for x in sorted(rates))} steps/s per program): {train_time:.2f} s")
    p(f"outside training steps: {wall - train_time:.2f} s = {100 * (wall - train_time) / wall:.1f}%"
      f" of the run (bar: < 15%)")
    p("where (seconds; phases of programs trained side by side overlap, so these can add up to "
      "more than the wall time):")
    p(f"  imports (jax, the package)             {t_imports:8.2f}")
    p(f"  first chunk of each length (compiles)  {first_chunks:8.2f}")
    p(f"  chunks after it (the steps themselves) {chunk_time - first_chunks:8.2f}")
    for k in sorted(spent):
        p(f"  {k:38s} {spent[k]:8.2f}")
    p(f"  of all that, JAX compilation           {compile_total:8.2f}  ("
      + ", ".join(f"{k.rsplit('/', 1)[-1]} {v:.2f}" for k, v in sorted(compile_events.items()))
      + ")")
    bench_report.emit(out, args.out)


if __name__ == "__main__":
    main()
