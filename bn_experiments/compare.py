"""`bn-exp compare A B ...`: several workdirs' runs on one figure, and a table of their finals.

Reads each `WORKDIR/summary.json` (never the training state), so it works on finished runs of any
experiment, of several experiments or of several machines. Each run is labelled `WORKDIR/run`; a
curve is the summary's (thinned) curve of the chosen metric, a diverged run ends with an "X".
"""
from __future__ import annotations

import pathlib

import numpy as np

from bn_experiments import plotting, summary

FINALS = ("test_accuracy", "max_test_accuracy", "steps_to_target")


def load(workdirs: list[str | pathlib.Path]) -> list[tuple[str, dict]]:
    """(label, summary) per workdir; ValueError naming the file when one is missing or invalid."""
    out = []
    for workdir in workdirs:
        doc = summary.load(pathlib.Path(workdir) / "summary.json", claims=False)
        out.append((str(workdir).rstrip("/"), doc))
    return out


def fmt(value) -> str:
    """A final metric for people: 4 decimals, integers with thousands separators, — for none."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return f"{int(value):,}"


def table(entries: list[tuple[str, dict]]) -> str:
    """A plain-text table: one row per run of every workdir, its final metrics and divergence."""
    header = ["workdir", "run", *FINALS, "diverged_at_step"]
    rows = [[label, run["name"], *(fmt(run["final"].get(k)) for k in FINALS),
             fmt(run.get("diverged_at_step"))]
            for label, doc in entries for run in doc["runs"]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def figure(entries: list[tuple[str, dict]], path: str | pathlib.Path,
           metric: str = "test_accuracy") -> pathlib.Path | None:
    """`metric` of every run of every workdir against training steps, one colour per workdir and
    one line style per run within it; None when no run has the metric."""
    fig = plotting.new_figure(8.0, 5.6)
    ax = fig.add_subplot()
    handles, values = [], []
    for i, (label, doc) in enumerate(entries):
        color = plotting.OTHER_COLORS[i % len(plotting.OTHER_COLORS)] if len(entries) > 1 else None
        for j, run in enumerate(doc["runs"]):
            curve = plotting.read_curve(run, metric)
            if curve is None:
                continue
            steps, vals = curve
            style = plotting.LINE_STYLES[j % len(plotting.LINE_STYLES)][0]
            (line,) = ax.plot(steps, vals, linestyle=style, linewidth=1.5,
                              color=color or f"C{j % 10}", label=f"{label}/{run['name']}")
            handles.append(line)
            values.append(vals[np.isfinite(vals)])
            div = run.get("diverged_at_step")
            finite = vals[np.isfinite(vals)]
            if div is not None and finite.size:
                ax.plot([div], [finite[-1]], marker="X", markersize=9, color=line.get_color(),
                        linestyle="none", markeredgecolor="white")
    if not handles:
        fig.clear()
        return None
    if metric.endswith("accuracy"):
        low = float(np.concatenate(values).min()) if values else 0.0
        ax.set_ylim(max(0.0, np.floor((low - 0.01) * 20) / 20), 1.005)
    plotting.style_step_axes(ax, "training steps", metric.replace("_", " "))
    plotting.suptitle(fig, f"{metric.replace('_', ' ')}: " + ", ".join(label for label, _ in entries))
    plotting.legend_below(fig, handles)
    return plotting.save_png(fig, pathlib.Path(path))
