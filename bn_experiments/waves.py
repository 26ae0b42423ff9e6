"""A wave: programs trained side by side, each on its own device, in lockstep rounds.

A round is one chunk of steps and the evaluation after it, for every program of the wave that is
not done. The programs of a round run in threads (JAX releases the interpreter lock while XLA
compiles and computes, so two programs on two CPU devices use two cores, compilation included);
the main thread then writes their metrics.jsonl rows in program order, moves the progress bar,
and between rounds, with nothing in flight, checkpoints and honours Ctrl-C. The numbers do not
depend on the threads: each program computes exactly what it computes alone.

One checkpoint holds the whole wave (every program's carry and host record, the length of
metrics.jsonl), written after the same round for all of them, so a killed run resumes every
program from one consistent point and metrics.jsonl is cut back to exactly that point. A wave of
one program writes the checkpoint format of a program alone.
"""
from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from bn_experiments import checkpoint as checkpoint_lib
from bn_experiments import interrupt
from bn_experiments.loop import ProgramRun, RunResult, describe

MORE = "more"  # checkpoint key of the programs after the first


def _in_parallel(programs: list[ProgramRun], pool, fn: Callable) -> list:
    """`fn(program)` for every program (in threads when there is a pool), results in order; every
    call has finished before an exception propagates, so nothing is left in flight."""
    if pool is None:
        return [fn(p) for p in programs]
    futures = [pool.submit(fn, p) for p in programs]
    concurrent.futures.wait(futures)
    return [f.result() for f in futures]


def _prepare_in_background(programs: list[ProgramRun]) -> concurrent.futures.Future | None:
    """`ProgramRun.prepare_results` of every program that needs it, one after the other in a
    thread of the lowest CPU priority (nice 19, where the OS allows it): it compiles in the time
    the cores would idle (a program that finishes its round early waits for the others) rather
    than after the last step. None when no program needs it."""
    todo = [(p, p.carry) for p in programs if p.uses_population]
    if not todo:
        return None

    def prepare() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):  # not Linux, or not allowed: normal priority
            pass
        for program, carry in todo:
            program.prepare_results(carry)

    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prepare")
    try:
        return executor.submit(prepare)
    finally:
        executor.shutdown(wait=False)


def _keys_as_data(carry: dict) -> dict:
    return {**carry, **{k: jax.random.key_data(carry[k]) for k in checkpoint_lib._KEYS}}


def _keys_from_data(carry: dict) -> dict:
    return {**carry, **{k: jax.random.wrap_key_data(carry[k]) for k in checkpoint_lib._KEYS}}


def _save(checkpointer, programs: list[ProgramRun], rounds: int, metrics_file) -> None:
    if metrics_file is not None:
        metrics_file.flush()
    offset = np.asarray(metrics_file.tell() if metrics_file is not None else 0)
    first, rest = programs[0], programs[1:]
    host = {**first.host_state(), "metrics_bytes": offset}
    carry = first.carry
    if rest:  # several programs: the first as alone, the others under MORE, each with its step
        host["at"] = np.asarray(first.step)
        host[MORE] = {str(i): {**p.host_state(), "at": np.asarray(p.step)}
                      for i, p in enumerate(rest, 1)}
        carry = {**carry, MORE: [_keys_as_data(p.carry) for p in rest]}
    checkpointer.save(rounds if rest else first.step, carry, host)


def _restore(checkpointer, programs: list[ProgramRun], metrics_file) -> int:
    """Restores every program from the wave's checkpoint; the rounds it had done (0: fresh)."""
    first, rest = programs[0], programs[1:]
    like = first.carry if not rest else {**first.carry,
                                         MORE: [_keys_as_data(p.carry) for p in rest]}
    label, carry, host = checkpointer.restore(like)
    if metrics_file is not None:  # rows written after the checkpoint are dropped
        metrics_file.truncate(int(host["metrics_bytes"]))
        metrics_file.seek(int(host["metrics_bytes"]))
    if label == 0:  # the start-of-program checkpoint of earlier versions: nothing trained yet
        return 0
    more = carry.pop(MORE, [])
    first.restore(int(host.get("at", label)), carry, host)
    for i, (p, c) in enumerate(zip(rest, more), 1):
        h = host[MORE][str(i)]
        if int(h["at"]) > 0:
            p.restore(int(h["at"]), _keys_from_data(c), h)
    return label


def train_wave(programs: list[ProgramRun], *, log: Callable[[dict], None] | None = None,
               progress: bool = True, desc: str | None = None,
               checkpointer: checkpoint_lib.Checkpointer | None = None,
               checkpoint_every: int = 0, metrics_file=None) -> list[list[RunResult]]:
    """Trains `programs` side by side; each program's results, in order.

    With `checkpointer`, the wave's full state is saved every `checkpoint_every` steps (after the
    round in which a program reaches such a step) and, when a checkpoint exists, training resumes
    from it; `metrics_file` (the open metrics.jsonl) is then cut back to its length at that
    checkpoint."""
    runs = [r for p in programs for r in p.runs]
    pool = (concurrent.futures.ThreadPoolExecutor(len(programs), thread_name_prefix="program")
            if len(programs) > 1 else None)
    try:
        return _train(programs, pool, runs, log, progress, desc, checkpointer, checkpoint_every,
                      metrics_file)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _train(programs, pool, runs, log, progress, desc, checkpointer, checkpoint_every,
           metrics_file) -> list[list[RunResult]]:
    def write(rows_per_program: list[list[dict]]) -> None:
        if log is not None:
            for rows in rows_per_program:
                for row in rows:
                    log(row)

    _in_parallel(programs, pool, ProgramRun.init)
    rounds = 0
    if checkpointer is not None and checkpointer.exists():
        rounds = _restore(checkpointer, programs, metrics_file)
    write(_in_parallel(programs, pool, ProgramRun.begin))
    prepared = _prepare_in_background(programs)
    total = max(p.static.steps for p in programs)
    bar = tqdm(total=total, initial=min(p.step for p in programs), desc=desc or describe(runs),
               unit="step", disable=not progress, leave=False)
    while not all(p.done for p in programs):
        active = [p for p in programs if not p.done]
        before = bar.n
        write(_in_parallel(active, pool, ProgramRun.advance))
        rounds += 1
        bar.update(min(p.step for p in active) - before)
        best = max((p.best_accuracy() for p in programs), default=float("nan"))
        diverged = sum(p.num_diverged() for p in programs)
        bar.set_postfix_str((f"test_accuracy {best:.4f}" if len(runs) == 1 else
                             f"best test_accuracy of {len(runs)} runs {best:.4f}")
                            + (f", {diverged} diverged" if diverged else ""))
        going = [p for p in active if not p.done]
        stop = interrupt.requested() and bool(going)
        if checkpointer is not None and checkpoint_every and going and (
                stop or any(p.step % checkpoint_every == 0 for p in going)):
            _save(checkpointer, programs, rounds, metrics_file)
        if stop:
            bar.close()
            kept = ("its state at this step is checkpointed" if checkpointer is not None
                    and checkpoint_every else "no checkpoint (checkpoint_every=0): it restarts")
            interrupt.check(f"interrupted at step {min(p.step for p in going):,} of "
                            f"{max(p.static.steps for p in going):,} of {describe(runs)}; {kept}")
    bar.close()
    if prepared is not None:
        prepared.result()  # done (or, on a short run, waited for); its errors are the run's
    return _in_parallel(programs, pool, ProgramRun.results)
