"""A benchmark's report: printed, and written to --out (folders created) when one is given.

Shared by the benchmark scripts (`python scripts/<name>.py` puts this folder on sys.path)."""
from __future__ import annotations

import pathlib


def emit(lines: list[str], out: pathlib.Path | None) -> None:
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
