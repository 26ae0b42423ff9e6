"""Execute a notebook top to bottom, as CI's smoke test of the Colab quickstart.

    python scripts/run_notebook.py notebooks/colab_quickstart.ipynb [--timeout 900] [--output OUT.ipynb]

Runs every code cell with nbclient in a fresh IPython kernel that is this Python (the active
virtual environment's `sys.executable`, whatever kernelspecs the machine has installed), with
BN_EXP_NOTEBOOK_QUICK=1 in its environment (the notebook's tiny settings) and a temporary working
directory, so the notebook's outputs never land in the repository. Prints one line per code cell
and a summary; exits 1 on a cell error, a cell timeout or a dead kernel (printing the failing
cell and its error), 2 when nbclient/nbformat/ipykernel are missing. The notebook file itself is
not modified; `--output` writes the executed copy (with outputs) elsewhere.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import sys
import tempfile
import time


def _kernel_manager(kernel_dir: pathlib.Path):
    """An async kernel manager whose only "python3" kernelspec runs this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec_dir = kernel_dir / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (run_notebook.py)", "language": "python",
        "metadata": {"debugger": False}}))
    ksm = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    # Local sockets where available: a private channel, and no warning about plain-text TCP.
    where = {"transport": "ipc", "ip": str(kernel_dir / "ipc")} if os.name == "posix" else {}
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm, **where)


def _seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip()]
    return (lines[0][:70] + ("..." if len(lines[0]) > 70 else "")) if lines else "(empty)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=pathlib.Path)
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (900)")
    parser.add_argument("--output", type=pathlib.Path, help="also write the executed notebook here")
    args = parser.parse_args(argv)

    try:
        import ipykernel  # noqa: F401  (the kernel below runs `python -m ipykernel_launcher`)
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    except ImportError as err:
        print(f"run_notebook: {err}; install nbclient, nbformat and ipykernel into {sys.prefix} "
              "(pip install -e '.[test]')", file=sys.stderr)
        return 2

    if not args.notebook.is_file():
        print(f"run_notebook: {args.notebook}: no such file", file=sys.stderr)
        return 2
    nb = nbformat.read(args.notebook, as_version=4)
    os.environ["BN_EXP_NOTEBOOK_QUICK"] = "1"  # inherited by the kernel
    start = time.monotonic()
    error = None
    with tempfile.TemporaryDirectory(prefix="bn-exp-notebook-") as tmp:
        workdir = pathlib.Path(tmp) / "work"
        workdir.mkdir()
        client = NotebookClient(nb, km=_kernel_manager(pathlib.Path(tmp) / "kernels"),
                                timeout=args.timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}})
        print(f"run_notebook: {args.notebook} with kernel {sys.executable}, "
              f"BN_EXP_NOTEBOOK_QUICK=1, in {workdir}", flush=True)
        try:
            client.execute(cleanup_kc=True)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            error = err
    elapsed = time.monotonic() - start

    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.output)
    code_cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    failed = None
    for i, cell in code_cells:
        if cell.get("execution_count") is None and not cell.get("outputs"):
            status = "not run"
        elif any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            status, failed = "ERROR", (i, cell)
        else:
            status = "ok"
        secs = _seconds(cell)
        took = f"{secs:7.1f} s" if secs is not None else "        -"
        print(f"  cell {i:2d} {status:8s}{took}  {_first_line(cell.source)}")
    if error is not None:
        if failed is None:  # a timeout or a dead kernel leaves no error output
            ran = [(i, c) for i, c in code_cells if c.get("execution_count") is not None]
            failed = ran[-1] if ran else None
        where = f"cell {failed[0]}" if failed else "before the first cell"
        print(f"run_notebook: FAILED in {where} after {elapsed:.0f} s ({type(error).__name__}):",
              file=sys.stderr)
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # no terminal colours
        if failed and failed[1].source not in message:
            print("---- cell source ----\n" + failed[1].source + "\n---- error ----", file=sys.stderr)
        print(message[-6000:], file=sys.stderr)
        return 1
    print(f"run_notebook: OK, {len(code_cells)} code cells in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
