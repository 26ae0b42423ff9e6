"""Throughput of the Figure 1 trainer against the standard ways to write the same training loop.

What is measured: SGD steps per second of the fig1 config's two networks at its first seed (`no_bn`
and `bn`: a 784-100-100-100-10 sigmoid MLP on the embedded MNIST, batch 60, plain SGD at the
config's learning rate, with the 15/50/85th percentiles of 4 tracked units of the last hidden
layer's pre-activation computed every step), for

1. "trainer": our compiled trainer (`bn_experiments.train`) as the runner drives it
   (`train.chunk_runner`): one `lax.scan` of `eval_every` steps per jitted chunk, the divergence
   check once per chunk (one small fetch to the host), chunks called back to back (compile excluded
   by a warm-up chunk);
2. "flax.linen loop": the standard Flax way, an equivalent `flax.linen` MLP, `optax.sgd(lr)`, data on
   the device and a jitted `train_step(state, step_index)` called from Python once per step, which
   picks its batch from a precomputed device array of batch indices, updates params and
   batch_stats and returns the same per-step loss and percentiles as device arrays (no per-step
   fetch to the host; one block at the end);
3. "pytorch eager" (when `import torch` works): the same MLP in PyTorch (float32, CPU, default
   threads), `torch.optim.SGD(lr=0.1)`, `nn.BatchNorm1d(momentum=0.01, eps=1e-5)`, the same per-step
   `torch.quantile` work kept as tensors; plus, as a reference, the same with 1 thread: with its
   OpenMP threads on every core, eager PyTorch collapses (10-100x) when other jobs hold a core, so
   the report judges the torch bars both against the default (as specified) and against the
   faster of the two;
4. the FLOP/s of a large float32 matmul in JAX, and the fraction of it the trainer reaches (analytic
   matmul FLOPs of a training step x steps/s); and, for reference, the same matmul in a process
   pinned to one core: XLA runs the step's batch-60 matmuls on one thread, so one core's figure
   is the step's ceiling.

Why: the trainer's design claim is that running a whole chunk of steps as one compiled program
(with the metrics computed inside it) is faster than the usual per-step Python loop, in JAX or in
PyTorch; the project sets bars for it on a 2-core CPU, printed beside the numbers with PASS/MISS.

How: everything runs in one process; every repeat round measures all contenders for both models
one after the other (the order rotated each round), so a machine loaded by other jobs slows all of
them alike; the report gives the median over the rounds (and the min..max). Each contender keeps
training from where its previous measurement stopped (the speed of these dense ops does not depend
on the values). A per-step loop stops a measurement early after --max-seconds (its steps/s is then
over the steps it did), so a collapsed contender cannot stretch the run. The load average is
printed: the numbers of a loaded machine are only comparable within one report. The bars are
fixed below and never adjusted to the measurement.

Usage: python scripts/bench_fig1.py [--repeats 5] [--steps 5000] [--max-seconds 15]
                                   [--out results/bench/bench_fig1_cpu.txt]

Whole-process mode (scripts/bench_fig1_process.py): `bn-exp run` of Figure 1, 2 x 30,000 steps,
against PyTorch eager doing the same work, both timed from outside as subprocesses:

       python scripts/bench_fig1.py --whole-process [--rounds 3] [--steps 30000] [--devices N]
                                   [--out results/bench/bench_fig1_process_cpu.txt]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata

import bench_report  # this script's folder is on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import sweep
from bn_experiments import train
from bn_experiments.configs import fig1_mnist

PERCENTILES = train.PERCENTILES  # (15, 50, 85)
CHECK_EVERY = 100  # per-step loops look at the clock every this many steps (for --max-seconds)

# The project's bars for this 2-core CPU: (label, model, kind, threshold). Not to be tuned.
BARS = (
    ("BN model >= 2x PyTorch eager", "bn", "torch", 2.0),
    ("no-BN model >= 1.7x PyTorch eager", "no_bn", "torch", 1.7),
    ("BN model >= 1.25x flax.linen loop", "bn", "flax", 1.25),
    ("no-BN model >= 1.25x flax.linen loop", "no_bn", "flax", 1.25),
    ("BN model >= 60% of matmul throughput", "bn", "matmul", 0.60),
    ("no-BN model >= 60% of matmul throughput", "no_bn", "matmul", 0.60),
)


# ---------------------------------------------------------------------------- FLOP count


def step_flops(input_size: int, widths: tuple[int, ...], num_classes: int, batch: int) -> int:
    """Matmul FLOPs of one SGD step (forward + backward), multiply-add = 2 FLOPs.

    Each layer l (fan_in x fan_out) costs 2*B*fan_in*fan_out in the forward pass (B x fan_in times
    fan_in x fan_out). The backward pass has, per layer, the weight gradient u^T @ dz (the same
    2*B*fan_in*fan_out) and the input gradient dz @ W^T (again 2*B*fan_in*fan_out), except that the
    first layer's input is the data, which needs no gradient, so layer 1 has no input-gradient
    matmul. Total = 2*B*(3*sum_l fan_in*fan_out - fan_in_1*fan_out_1). Elementwise work (sigmoid,
    BN, bias, softmax, SGD update, percentiles) is not counted: it is not matmul work.
    """
    sizes = (input_size, *widths, num_classes)
    mac = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    forward = 2 * batch * sum(mac)
    weight_grads = 2 * batch * sum(mac)
    input_grads = 2 * batch * sum(mac[1:])
    return forward + weight_grads + input_grads


# ---------------------------------------------------------------------------- contenders


def batch_order(run: config_lib.Run, steps: int, num_train: int) -> np.ndarray:
    """The trainer's batch indices for its first `steps` steps: the per-step loops cycle through
    them, so every contender trains on the same batches."""
    k_data = jax.random.split(jax.random.key(run.numbers.seed), 3)[1]
    return np.asarray(data_lib.batch_indices(k_data, 0, steps, run.static.batch_size, num_train))


def fig1_runs(cfg, ds_host: data_lib.Dataset) -> list[config_lib.Run]:
    """Figure 1's two networks at the config's first seed, named `no_bn` and `bn`.

    The config is a norm x seed grid (`sweep.expand`); `config_lib.runs` alone would give only its
    base run, the network without BN."""
    runs = sweep.expand(cfg, input_shape=tuple(ds_host.input_shape), num_train=ds_host.num_train)
    first = runs[0].numbers.seed
    return [dataclasses.replace(r, name="bn" if r.static.model.use_bn else "no_bn")
            for r in runs if r.numbers.seed == first]


class TrainerBench:
    """Our compiled trainer: jitted chunks of `eval_every` scanned steps, back to back."""

    def __init__(self, run: config_lib.Run, ds: data_lib.Dataset):
        self.static = run.static
        program = train.make_program(run.static, ds)
        self.numbers = train.numbers_to_arrays(run.numbers)
        self.chunk = train.chunk_runner(program)  # as the runner trains: optimistic chunks
        self.carry = jax.jit(program.init)(self.numbers)
        self.carry, metrics = self.chunk(self.carry, self.numbers)  # compile + warm up
        jax.block_until_ready((self.carry, metrics))

    def measure(self, steps: int, max_seconds: float) -> float:
        n = max(1, steps // self.static.eval_every)
        outs = []
        t0 = time.perf_counter()
        for _ in range(n):  # no time cap: n chunks are dispatched back to back, then one block
            self.carry, metrics = self.chunk(self.carry, self.numbers)
            outs.append(metrics)
        jax.block_until_ready((self.carry, outs))
        dt = time.perf_counter() - t0
        if int(self.carry["diverged_at"]) >= 0:
            raise RuntimeError("trainer run diverged during the benchmark; the timing is not valid")
        return n * self.static.eval_every / dt


class FlaxLoopBench:
    """The standard flax.linen way: a jitted train_step called from Python once per step."""

    def __init__(self, run: config_lib.Run, ds: data_lib.Dataset, batch_idx: np.ndarray):
        import flax.linen as nn
        from flax.training import train_state

        cfg = run.static.model
        init_std, units = run.numbers.init_std, jnp.asarray(run.static.tracked_units)
        kinit = nn.initializers.normal(stddev=init_std)

        class MLP(nn.Module):
            @nn.compact
            def __call__(self, x, train: bool):
                h = x.reshape(x.shape[0], -1)
                pre = None
                for w in cfg.widths:
                    if cfg.use_bn:
                        z = nn.Dense(w, use_bias=False, kernel_init=kinit)(h)
                        pre = nn.BatchNorm(use_running_average=not train, momentum=cfg.bn_momentum,
                                           epsilon=cfg.bn_epsilon)(z)
                    else:
                        pre = nn.Dense(w, kernel_init=kinit)(h)
                    h = nn.sigmoid(pre)
                return nn.Dense(cfg.num_classes, kernel_init=kinit)(h), pre

        class State(train_state.TrainState):
            batch_stats: dict

        model = MLP()
        variables = model.init(jax.random.key(run.numbers.seed), ds.x_train[:2], train=False)
        self.state = State.create(apply_fn=model.apply, params=variables["params"],
                                  batch_stats=variables.get("batch_stats", {}),
                                  tx=optax.sgd(run.numbers.learning_rate))
        x_train, y_train = ds.x_train, ds.y_train
        idx_all = jax.device_put(batch_idx)
        use_bn, qs = cfg.use_bn, jnp.asarray(PERCENTILES)
        self.num_batches = batch_idx.shape[0]

        def train_step(state, step_index):
            idx = jax.lax.dynamic_index_in_dim(idx_all, step_index, keepdims=False)
            x, y = x_train[idx], y_train[idx]

            def loss_fn(params):
                if use_bn:
                    (logits, pre), upd = state.apply_fn(
                        {"params": params, "batch_stats": state.batch_stats}, x, train=True,
                        mutable=["batch_stats"])
                    stats = upd["batch_stats"]
                else:
                    logits, pre = state.apply_fn({"params": params}, x, train=True)
                    stats = state.batch_stats
                loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
                return loss, (stats, pre)

            (loss, (stats, pre)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            state = state.apply_gradients(grads=grads, batch_stats=stats)
            pct = jnp.percentile(pre[:, units], qs, axis=0)
            return state, {"train_loss": loss, "preact_percentiles": pct}

        self.train_step = jax.jit(train_step, donate_argnums=0)
        self.i = 0
        self.state, m = self.train_step(self.state, 0)  # compile + warm up
        jax.block_until_ready((self.state, m))

    def measure(self, steps: int, max_seconds: float) -> float:
        outs = []
        t0 = time.perf_counter()
        done = 0
        while done < steps and (done % CHECK_EVERY or time.perf_counter() - t0 < max_seconds):
            self.i = (self.i + 1) % self.num_batches
            self.state, metrics = self.train_step(self.state, self.i)
            outs.append(metrics)
            done += 1
        jax.block_until_ready((self.state, outs))
        return done / (time.perf_counter() - t0)


class TorchBench:
    """The same MLP in eager PyTorch (float32, default threads; CPU unless `device` names another,
    e.g. "cuda" in scripts/bench_gpu.py, where a measurement ends with a device synchronize)."""

    def __init__(self, run: config_lib.Run, ds_host: data_lib.Dataset, batch_idx: np.ndarray,
                 threads: int | None = None, device: str = "cpu"):
        import torch
        from torch import nn

        self.torch = torch
        torch.manual_seed(run.numbers.seed)
        cfg = run.static.model
        init_std = run.numbers.init_std
        units = list(run.static.tracked_units)

        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                sizes = (cfg.input_size, *cfg.widths)
                self.linears = nn.ModuleList(
                    nn.Linear(a, b, bias=not cfg.use_bn) for a, b in zip(sizes[:-1], sizes[1:]))
                self.bns = nn.ModuleList(
                    nn.BatchNorm1d(w, momentum=1 - cfg.bn_momentum, eps=cfg.bn_epsilon)
                    for w in cfg.widths) if cfg.use_bn else None
                self.out = nn.Linear(cfg.widths[-1], cfg.num_classes)
                for lin in (*self.linears, self.out):
                    nn.init.normal_(lin.weight, std=init_std)
                    if lin.bias is not None:
                        nn.init.zeros_(lin.bias)

            def forward(self, x):
                h, pre = x, None
                for i, lin in enumerate(self.linears):
                    pre = lin(h)
                    if self.bns is not None:
                        pre = self.bns[i](pre)
                    h = torch.sigmoid(pre)
                return self.out(h), pre

        self.device = torch.device(device)
        self.model = MLP().train().to(self.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=run.numbers.learning_rate)
        x = ds_host.x_train.reshape(ds_host.x_train.shape[0], -1)
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        self.y = torch.from_numpy(np.asarray(ds_host.y_train, dtype=np.int64)).to(self.device)
        self.idx = torch.from_numpy(batch_idx.astype(np.int64)).to(self.device)
        self.units = torch.tensor(units, device=self.device)
        self.qs = torch.tensor([q / 100 for q in PERCENTILES], dtype=torch.float32,
                               device=self.device)
        self.i, self.threads = 0, threads
        self.measure(20, 60.0)  # warm up

    def step(self, i):
        torch, F = self.torch, self.torch.nn.functional
        b = self.idx[i]
        x, y = self.x[b], self.y[b]
        self.opt.zero_grad(set_to_none=True)
        logits, pre = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.opt.step()
        pct = torch.quantile(pre.detach()[:, self.units], self.qs, dim=0)
        return loss.detach(), pct

    def measure(self, steps: int, max_seconds: float) -> float:
        prev = self.torch.get_num_threads()
        if self.threads is not None:
            self.torch.set_num_threads(self.threads)
        try:
            outs = []
            t0 = time.perf_counter()
            done = 0
            while done < steps and (done % CHECK_EVERY or time.perf_counter() - t0 < max_seconds):
                self.i = (self.i + 1) % self.idx.shape[0]
                outs.append(self.step(self.i))
                done += 1
            if self.device.type == "cuda":
                self.torch.cuda.synchronize()  # the queued kernels are part of the work
            return done / (time.perf_counter() - t0)
        finally:
            self.torch.set_num_threads(prev)


class MatmulBench:
    """FLOP/s of an n x n @ n x n float32 matmul in JAX (jitted; median of `reps` calls)."""

    def __init__(self, n: int = 2048, reps: int = 7):
        self.n, self.reps = n, reps
        ka, kb = jax.random.split(jax.random.key(0))
        self.a = jax.random.normal(ka, (n, n), jnp.float32)
        self.b = jax.random.normal(kb, (n, n), jnp.float32)
        self.f = jax.jit(jnp.matmul)
        self.f(self.a, self.b).block_until_ready()

    def measure(self) -> float:
        times = []
        for _ in range(self.reps):
            t0 = time.perf_counter()
            self.f(self.a, self.b).block_until_ready()
            times.append(time.perf_counter() - t0)
        return 2 * self.n ** 3 / statistics.median(times)


_ONE_CORE = """
import os, statistics, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before jax starts its thread pools
import jax, jax.numpy as jnp
n, reps = int(sys.argv[1]), int(sys.argv[2])
a, b = (jax.random.normal(k, (n, n), jnp.float32) for k in jax.random.split(jax.random.key(0)))
f = jax.jit(jnp.matmul)
f(a, b).block_until_ready()
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); f(a, b).block_until_ready(); ts.append(time.perf_counter() - t0)
print(2 * n ** 3 / statistics.median(ts))
"""


def one_core_matmul(n: int, reps: int = 5) -> float | None:
    """FLOP/s of the same matmul in a fresh process pinned to one core (None where unsupported).

    A reference for what one thread can do: XLA runs the training step's small matmuls on one
    thread, so the step's ceiling is this, not the all-core figure.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    res = subprocess.run([sys.executable, "-c", _ONE_CORE, str(n), str(reps)],
                         capture_output=True, text=True, check=False)
    try:
        return float(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------- main


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def _fmt_rate(xs: list[float]) -> str:
    return f"{statistics.median(xs):9.0f} steps/s  [{min(xs):.0f}..{max(xs):.0f}]"


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeat rounds (median reported)")
    parser.add_argument("--steps", type=int, default=5000,
                        help="SGD steps per measurement (rounded down to whole trainer chunks)")
    parser.add_argument("--max-seconds", type=float, default=15.0,
                        help="a per-step loop (flax / torch) stops early after this many seconds of "
                             "one measurement (steps/s over the steps it did); guards the run time "
                             "when torch threads collapse under a loaded machine")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="also write the printed report to this file")
    parser.add_argument("--matmul-n", type=int, default=2048, help="size of the reference matmul")
    parser.add_argument("--whole-process", action="store_true",
                        help="time `bn-exp run` of Figure 1 against PyTorch eager, both as whole "
                             "processes (--steps then defaults to 30000)")
    parser.add_argument("--rounds", type=int, default=3, help="--whole-process: rounds")
    parser.add_argument("--devices", type=int, default=None,
                        help="--whole-process: bn-exp's --devices (default: one per core)")
    args = parser.parse_args()
    if args.whole_process:
        import bench_fig1_process  # this script's folder is on sys.path
        steps = 30_000 if "--steps" not in " ".join(sys.argv) else args.steps
        bench_fig1_process.main(args.rounds, steps, args.devices, args.out)
        return

    try:
        import torch
    except ImportError:
        torch = None

    cfg = fig1_mnist.get_config()
    ds_host = data_lib.load(cfg.data.source, standardize=cfg.data.standardize)
    runs = fig1_runs(cfg, ds_host)
    ds = data_lib.to_device(ds_host)
    eval_every = runs[0].static.eval_every
    steps = max(eval_every, args.steps // eval_every * eval_every)

    static0 = runs[0].static
    batch_idx = batch_order(runs[0], steps, ds.num_train)

    names = [r.name for r in runs]
    torch_default_threads = torch.get_num_threads() if torch is not None else None
    contenders: dict[str, dict[str, object]] = {}
    load_start = _load()
    print(f"load average (1/5/15 min) at start: {load_start}; compiling / warming up "
          f"({', '.join(names)}) ...", flush=True)
    for run in runs:
        c = {"trainer": TrainerBench(run, ds), "flax.linen loop": FlaxLoopBench(run, ds, batch_idx)}
        if torch is not None:
            c["pytorch eager"] = TorchBench(run, ds_host, batch_idx)
            # Reference only: eager PyTorch with OpenMP threads on every core collapses when other
            # jobs hold a core (threads wait at barriers for a descheduled peer); one thread shows
            # what PyTorch does without that effect.
            c["pytorch eager 1t"] = TorchBench(run, ds_host, batch_idx, threads=1)
        contenders[run.name] = c
    matmul = MatmulBench(args.matmul_n)

    kinds = list(next(iter(contenders.values())))
    rates = {(m, k): [] for m in names for k in kinds}
    mm_rates: list[float] = []
    mm1_rates: list[float] = []
    order = [(m, k) for m in names for k in kinds] + [("matmul", "matmul"), ("matmul1", "")]
    t_start = time.perf_counter()
    for r in range(args.repeats):
        rot = order[r % len(order):] + order[:r % len(order)]
        for m, k in rot:
            if m == "matmul":
                mm_rates.append(matmul.measure())
            elif m == "matmul1":
                rate = one_core_matmul(args.matmul_n)
                if rate is not None:
                    mm1_rates.append(rate)
            else:
                rates[(m, k)].append(contenders[m][k].measure(steps, args.max_seconds))
        print(f"round {r + 1}/{args.repeats} (steps/s): " + ", ".join(
            f"{m}/{k} {rates[(m, k)][-1]:.0f}" for m in names for k in kinds)
            + f", matmul {mm_rates[-1] / 1e9:.1f} GFLOP/s; load {_load()}", flush=True)
    bench_seconds = time.perf_counter() - t_start
    load_end = _load()

    mm = statistics.median(mm_rates)
    cfg0 = runs[0].static.model
    flops = step_flops(cfg0.input_size, cfg0.widths, cfg0.num_classes, static0.batch_size)

    lines = []
    out = lines.append
    out("bench_fig1: steps/s of the fig1 training step (784-100-100-100-10 sigmoid MLP, batch "
        f"{static0.batch_size}, SGD lr {runs[0].numbers.learning_rate}, per-step loss + 15/50/85th "
        f"percentiles of {len(static0.tracked_units)} tracked units)")
    out(f"data: {ds.name} ({ds.num_train} train images); trainer chunk = {eval_every} scanned steps")
    out(f"versions: jax {jax.__version__}, jaxlib {_version('jaxlib')}, flax {_version('flax')}, "
        f"optax {_version('optax')}, torch {torch.__version__ if torch else 'not installed'}, "
        f"numpy {np.__version__}, python {platform.python_version()}")
    out(f"device: {jax.devices()}; host CPU cores: {os.cpu_count()}"
        + (f"; torch default threads: {torch_default_threads}" if torch else ""))
    out(f"repeats: {args.repeats} rounds (contenders alternated, order rotated each round), "
        f"{steps} steps per measurement (per-step loops capped at {args.max_seconds:g} s); "
        f"median [min..max] over rounds; benchmark wall time {bench_seconds:.0f} s")
    out(f"load average (1/5/15 min): {load_start} at start, {load_end} at end "
        f"(other jobs share this machine)")
    out(f"matmul reference: {args.matmul_n}x{args.matmul_n} @ {args.matmul_n}x{args.matmul_n} "
        f"float32, jitted: {mm / 1e9:.1f} GFLOP/s (median; "
        f"[{min(mm_rates) / 1e9:.1f}..{max(mm_rates) / 1e9:.1f}])")
    mm1 = statistics.median(mm1_rates) if mm1_rates else None
    if mm1 is not None:
        out(f"matmul reference on one core (a process pinned to one CPU): {mm1 / 1e9:.1f} GFLOP/s "
            f"(median; [{min(mm1_rates) / 1e9:.1f}..{max(mm1_rates) / 1e9:.1f}]) = "
            f"{100 * mm1 / mm:.0f}% of the all-core reference")
    out(f"matmul FLOPs per training step (forward + weight grads + input grads but layer 1's): "
        f"{flops / 1e6:.3f} MFLOP")
    out("")
    ratios: dict[tuple[str, str], float] = {}
    for m in names:
        med = {k: statistics.median(rates[(m, k)]) for k in kinds}
        out(f"model {m}:")
        for k in kinds:
            label = {"pytorch eager": f"pytorch eager ({torch_default_threads} threads, default)",
                     "pytorch eager 1t": "pytorch eager (1 thread, reference)"}.get(k, k)
            out(f"  {label:40s} {_fmt_rate(rates[(m, k)])}")
        ratios[(m, "flax")] = med["trainer"] / med["flax.linen loop"]
        out(f"  trainer / flax.linen loop            = {ratios[(m, 'flax')]:.2f}x")
        if "pytorch eager" in med:
            ratios[(m, "torch")] = med["trainer"] / med["pytorch eager"]
            ratios[(m, "torch_best")] = med["trainer"] / max(med["pytorch eager"],
                                                             med["pytorch eager 1t"])
            out(f"  trainer / pytorch eager (default)    = {ratios[(m, 'torch')]:.2f}x")
            out(f"  trainer / faster of pytorch default, 1 thread = {ratios[(m, 'torch_best')]:.2f}x")
        else:
            out("  trainer / pytorch eager              = n/a (torch not installed)")
        ratios[(m, "matmul")] = med["trainer"] * flops / mm
        out(f"  trainer matmul FLOP/s                = {med['trainer'] * flops / 1e9:.2f} GFLOP/s "
            f"= {100 * ratios[(m, 'matmul')]:.1f}% of the matmul reference"
            + (f" ({100 * med['trainer'] * flops / mm1:.1f}% of one core's)" if mm1 else ""))
        out("")
    out("bars (this 2-core CPU; torch bars judged against torch's default threads as specified, "
        "and in brackets against the faster of default / 1 thread):")
    for label, m, kind, thr in BARS:
        if (m, kind) not in ratios:
            out(f"  {label:42s} measured n/a            -> N/A (torch not installed)")
            continue
        v = ratios[(m, kind)]
        shown = f"{100 * v:.1f}%" if kind == "matmul" else f"{v:.2f}x"
        need = f"{100 * thr:.0f}%" if kind == "matmul" else f"{thr:.2f}x"
        line = (f"  {label:42s} measured {shown:>7s} (bar {need:>5s}) -> "
                f"{'PASS' if v >= thr else 'MISS'}")
        if kind == "torch":
            vb = ratios[(m, "torch_best")]
            line += f"   [vs faster torch: {vb:.2f}x -> {'PASS' if vb >= thr else 'MISS'}]"
        out(line)
    print()
    bench_report.emit(lines, args.out)


if __name__ == "__main__":
    main()
