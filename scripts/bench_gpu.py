"""GPU benchmark: the three measurements issue 13 asks of a lent accelerator, in one short run.

Written for a machine lent for minutes (`scripts/bench_gpu.sh` is the whole device session), so
every stage is independent (a failure is printed and the next stage runs), prints as it goes, and
the last stage uses only the time left before --deadline-seconds:

1. fig1: SGD steps/s of the Figure 1 trainer (its two runs, `no_bn` and `bn`: 784-100-100-100-10
   sigmoid MLP, batch 60) against the flax.linen per-step loop and eager PyTorch on the same
   device (scripts/bench_fig1.py's contenders), contenders alternated, median of --repeats rounds.
2. sweep: an lr x init_std x seed sweep of the Figure 1 BN MLP as ONE vmapped program at 1, 16, 256
   and 1024 points (the 256-point program is the issue's measurement): compile time and
   point-steps/s of the trainer's chunks, at JAX's default float32 matmul precision (TF32 on
   NVIDIA tensor cores) and at "highest" (true float32, what a CPU computes); then the projected
   time of the paper-scale MLP claim set (~900 runs x 50,000 steps) at the best rate.
3. claims: the MLP claim set at its committed scale (`lr_sweep`, `lr_init_grid`,
   `activation_sweep`, then `fig1`), each the committed command (results/<name>/provenance.json)
   with its workdir moved, timed from outside as a subprocess; the verdicts and effects beside the
   committed CPU ones (float32 on a GPU reduces in another order, so the numbers differ in their
   last bits and a verdict near its threshold may differ; that is reported, not hidden).

    python scripts/bench_gpu.py [--out-dir DIR] [--deadline-seconds 480] [--repeats 3]
                                [--steps 3000] [--points 1,16,256,1024] [--quick]

--quick shrinks every stage (about 2 minutes on a 2-core CPU, to check the script before a
lease; its numbers are not measurements).
Results: DIR/bench_gpu.txt (the report) and DIR/claims_gpu.json (per experiment: wall time and
claims). The official MNIST is read from $BN_EXP_DATA_DIR/mnist for the claims stage.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
import traceback

T0 = time.perf_counter()
ROOT = pathlib.Path(__file__).resolve().parent.parent
CLAIM_SET = ("lr_sweep", "lr_init_grid", "activation_sweep", "fig1")
PAPER_SCALE_POINT_STEPS = 900 * 50_000  # issue 13's goal: ~900 runs of 50,000 steps in 10 min


class Report:
    """Lines printed at once and rewritten to the report file after each, so a killed run keeps
    everything it measured."""

    def __init__(self, path: pathlib.Path):
        self.path, self.lines = path, []
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)
        self.path.write_text("\n".join(self.lines) + "\n")


def elapsed() -> float:
    return time.perf_counter() - T0


def stage_fig1(out: Report, repeats: int, steps: int, quick: bool) -> None:
    import bench_fig1  # this script's folder is on sys.path
    from bn_experiments import data as data_lib
    from bn_experiments.configs import fig1_mnist

    try:
        import torch
        torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        torch, torch_device = None, None
    cfg = fig1_mnist.get_config()
    if quick:
        cfg.eval_every = 100
    ds_host = data_lib.load(cfg.data.source, standardize=cfg.data.standardize)
    runs = bench_fig1.fig1_runs(cfg, ds_host)
    ds = data_lib.to_device(ds_host)
    eval_every = runs[0].static.eval_every
    steps = max(eval_every, steps // eval_every * eval_every)
    batch_idx = bench_fig1.batch_order(runs[0], steps, ds.num_train)
    t = time.perf_counter()
    contenders = {}
    for run in runs:
        c = {"trainer": bench_fig1.TrainerBench(run, ds),
             "flax.linen loop": bench_fig1.FlaxLoopBench(run, ds, batch_idx)}
        if torch is not None:
            c[f"pytorch eager ({torch_device})"] = bench_fig1.TorchBench(
                run, ds_host, batch_idx, device=torch_device)
        contenders[run.name] = c
    out(f"  compile + warm-up of every contender: {time.perf_counter() - t:.1f} s")
    kinds = list(next(iter(contenders.values())))
    rates = {(m, k): [] for m in contenders for k in kinds}
    order = list(rates)
    for r in range(repeats):
        for m, k in order[r % len(order):] + order[:r % len(order)]:
            rates[(m, k)].append(contenders[m][k].measure(steps, 30.0))
    out(f"  {steps} steps per measurement, median of {repeats} rounds (alternated); "
        f"torch {torch.__version__ if torch else 'not installed'}")
    for m in contenders:
        ours = statistics.median(rates[(m, "trainer")])
        for k in kinds:
            v = statistics.median(rates[(m, k)])
            ratio = "" if k == "trainer" else f"  -> trainer is {ours / v:.2f}x"
            out(f"  {m:6s} {k:22s}: {v:9.0f} steps/s [{min(rates[(m, k)]):.0f}.."
                f"{max(rates[(m, k)]):.0f}]{ratio}")


def _grid_sizes(points: int) -> tuple[int, int, int]:
    """(learning rates, init stds, seeds) with that many points: lr x init x seed."""
    table = {1: (1, 1, 1), 16: (4, 4, 1), 64: (4, 4, 4), 256: (8, 8, 4), 1024: (16, 16, 4)}
    if points not in table:
        raise SystemExit(f"--points: {points} is not one of {sorted(table)}")
    return table[points]


def stage_sweep(out: Report, point_counts: list[int], chunks: int, quick: bool) -> float | None:
    """Returns the best point-steps/s measured (for the projection), or None."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bn_experiments import data as data_lib, sweep, train
    from bn_experiments.configs import fig1_mnist

    best = None
    ds_host = data_lib.load(fig1_mnist.get_config().data.source)
    ds = data_lib.to_device(ds_host)
    for precision in ("default", "highest"):
        for points in point_counts:
            n_lr, n_std, n_seed = _grid_sizes(points)
            cfg = fig1_mnist.get_config()
            if quick:
                cfg.eval_every = 100
            cfg.grid = (("model.norm", ("batchnorm",)),
                        ("learning_rate", tuple(float(x) for x in np.geomspace(0.01, 1.0, n_lr))),
                        ("model.init_std", tuple(float(x) for x in np.geomspace(0.01, 1.0, n_std))),
                        ("seed", tuple(range(n_seed))))
            runs = sweep.expand(cfg, num_train=ds.num_train)
            assert len(runs) == points, (len(runs), points)
            with jax.default_matmul_precision(precision):
                program = train.make_program(runs[0].static, ds)
                init = jax.jit(jax.vmap(program.init))
                chunk = train.chunk_runner(program, batched=True)
                nums = jax.tree.map(lambda *xs: jnp.stack(xs),
                                    *[train.numbers_to_arrays(r.numbers) for r in runs])
                t = time.perf_counter()
                carry, m = chunk(init(nums), nums)  # compiles
                jax.block_until_ready((carry, m))
                compile_s = time.perf_counter() - t
                t = time.perf_counter()
                for _ in range(chunks):
                    carry, m = chunk(carry, nums)
                jax.block_until_ready((carry, m))
                dt = time.perf_counter() - t
            rate = points * chunks * cfg.eval_every / dt
            diverged = int(np.sum(np.asarray(carry["diverged_at"]) >= 0))
            best = rate if best is None or rate > best else best
            out(f"  precision {precision:8s} {points:5d} points ({n_lr} lr x {n_std} init_std x "
                f"{n_seed} seeds): {rate:12.0f} point-steps/s = {rate / points:8.0f} steps/s per "
                f"point ({chunks} x {cfg.eval_every} steps in {dt:.2f} s; first chunk with "
                f"compilation {compile_s:.1f} s; {diverged} diverged)")
    return best


def _committed_command(name: str, workdir: pathlib.Path) -> list[str]:
    """The committed command (as scripts/reproduce_all.sh reruns it: the official MNIST from the
    `mnist` source), run by this Python, with its workdir moved."""
    prov = json.loads((ROOT / "results" / name / "provenance.json").read_text())
    argv = shlex.split(re.sub(r"idx:[^ ]*/mnist\b", "mnist", prov["command"]))
    assert argv[0] == "bn-exp", argv
    argv = [sys.executable, "-m", "bn_experiments.cli", *argv[1:]]
    argv[argv.index("--workdir") + 1] = str(workdir)
    if "--restart" not in argv:
        argv.append("--restart")
    return [a for a in argv if not a.startswith("--progress")] + ["--progress=false"]


def stage_claims(out: Report, deadline: float, workroot: pathlib.Path, out_dir: pathlib.Path,
                 quick: bool) -> None:
    record = {}
    workroot.mkdir(parents=True, exist_ok=True)
    for name in CLAIM_SET:
        left = deadline - elapsed()
        if left < 20:
            out(f"  {name}: not run ({left:.0f} s left before the deadline)")
            continue
        argv = _committed_command(name, workroot / name)
        if quick:
            argv[argv.index("--config") + 1] += ":quick"
        t = time.perf_counter()
        try:
            # From the work folder: `python -m` puts its folder first on sys.path, and the source
            # tree's bn_experiments/ (configs/ sits beside it) would shadow an installed package.
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=left, cwd=workroot)
            wall, rc, tail = time.perf_counter() - t, proc.returncode, proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            out(f"  {name}: did not finish in the {left:.0f} s left (`{shlex.join(argv)}`)")
            record[name] = {"command": shlex.join(argv), "finished": False, "seconds": left}
            continue
        committed = json.loads((ROOT / "results" / name / "provenance.json").read_text())
        entry = {"command": shlex.join(argv), "finished": rc == 0, "seconds": round(wall, 1),
                 "committed_cpu_seconds": committed.get("wall_seconds")}
        if rc != 0:
            out(f"  {name}: exit {rc} after {wall:.0f} s: {tail.strip().splitlines()[-1:]}")
            record[name] = entry
            continue
        mine = json.loads((workroot / name / "summary.json").read_text())["claims"]
        theirs = {c["id"]: c for c in json.loads(
            (ROOT / "results" / name / "summary.json").read_text())["claims"]}
        entry["claims"] = [{"id": c["id"], "verdict": c["verdict"],
                            "effect": c["evidence"]["effect"], "ci95": c["evidence"]["ci95"],
                            "committed_verdict": theirs.get(c["id"], {}).get("verdict"),
                            "committed_effect": theirs.get(c["id"], {}).get("evidence", {})
                            .get("effect")} for c in mine]
        record[name] = entry
        cpu = committed.get("wall_seconds")
        out(f"  {name}: {wall:.0f} s on this device (committed run on the 2-core CPU: "
            f"{cpu:.0f} s -> {cpu / wall:.1f}x)" if cpu else f"  {name}: {wall:.0f} s")
        for c in entry["claims"]:
            same = "same verdict" if c["verdict"] == c["committed_verdict"] else "VERDICT DIFFERS"
            out(f"    {c['id']}: {c['verdict']} (effect {c['effect']}) vs committed "
                f"{c['committed_verdict']} (effect {c['committed_effect']}): {same}")
        (out_dir / "claims_gpu.json").write_text(json.dumps(record, indent=1) + "\n")
    (out_dir / "claims_gpu.json").write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=pathlib.Path, default=ROOT / "results" / "bench")
    parser.add_argument("--deadline-seconds", type=float, default=480.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--points", default="1,16,256,1024")
    parser.add_argument("--chunks", type=int, default=4, help="timed chunks per sweep program")
    parser.add_argument("--workroot", type=pathlib.Path, default=pathlib.Path("/tmp/bench_gpu"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stages", default="fig1,sweep,claims")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.chunks = 1, 200, 1
    import jax

    out = Report(args.out_dir / "bench_gpu.txt")
    dev = jax.devices()[0]
    out(f"bench_gpu ({'--quick, not a measurement' if args.quick else 'scripts/bench_gpu.py'}): "
        f"jax {jax.__version__}, {len(jax.devices())} x {dev.device_kind} ({dev.platform}), "
        f"python {platform.python_version()}, {os.cpu_count()} host cores")
    out(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    stages = args.stages.split(",")
    best = None
    for stage in stages:
        out("")
        out(f"== {stage} (started at {elapsed():.0f} s)")
        try:
            if stage == "fig1":
                stage_fig1(out, args.repeats, args.steps, args.quick)
            elif stage == "sweep":
                best = stage_sweep(out, [int(p) for p in args.points.split(",")], args.chunks,
                                   args.quick)
                if best:
                    out(f"  projection: the paper-scale MLP claim set ({PAPER_SCALE_POINT_STEPS:,}"
                        f" point-steps) at {best:,.0f} point-steps/s: "
                        f"{PAPER_SCALE_POINT_STEPS / best / 60:.1f} min of training steps "
                        f"(issue 13's goal: 10 min; evaluation and compilation not counted)")
            elif stage == "claims":
                stage_claims(out, args.deadline_seconds, args.workroot, args.out_dir, args.quick)
            else:
                raise SystemExit(f"--stages: unknown stage {stage!r} (fig1, sweep, claims)")
        except Exception:  # noqa: BLE001 (a lease is minutes: report and go on)
            out(f"  {stage} FAILED:")
            for line in traceback.format_exc().splitlines()[-6:]:
                out(f"    {line}")
    out("")
    out(f"done in {elapsed():.0f} s")


if __name__ == "__main__":
    main()
