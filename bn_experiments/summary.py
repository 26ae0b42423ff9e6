"""The summary.json contract: building, validating, thinning and writing results files.

Every experiment writes one `summary.json` (schema in `validate`) from which figures and the claims
ledger are regenerated without retraining. The file holds no timestamps, so the same run gives the
same bytes. Files are written to a temporary file and renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import re
import stat
import tempfile
from typing import Any, Iterable

import numpy as np

from bn_experiments.stats import INCONCLUSIVE, VERDICTS

MAX_POINTS = 5000
MAX_POINTS_SWEEP = 500


def clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def thin(steps: Iterable[int], values: Iterable[float], max_points: int = MAX_POINTS) -> dict:
    """A curve `{"step": [...], "value": [...]}`, thinned evenly to `max_points`, last step kept."""
    steps, values = np.asarray(list(steps)), np.asarray(list(values), dtype=np.float64)
    if len(steps) > max_points:
        keep = np.unique(np.round(np.linspace(0, len(steps) - 1, max_points)).astype(int))
        steps, values = steps[keep], values[keep]
    return {"step": [int(s) for s in steps],
            "value": [float(f"{v:.7g}") if math.isfinite(v) else None for v in values]}


def problems(doc: Any, *, claims: bool = True) -> list[str]:
    """Every way `doc` breaks the summary.json contract (empty when it conforms). With
    `claims=False` the claim rows are not checked (they are about to be recomputed)."""
    out = []
    if not isinstance(doc, dict):
        return ["top level is not an object"]
    if not isinstance(doc.get("experiment"), str) or not doc["experiment"]:
        out.append("'experiment' must be a non-empty string")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        out.append("'runs' must be a non-empty list")
        runs = []
    names = set()
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            out.append(f"{where} is not an object")
            continue
        name = run.get("name")
        if not isinstance(name, str) or not name or name in names:
            out.append(f"{where}.name must be a unique non-empty string")
        names.add(name)
        if not isinstance(run.get("config"), dict):
            out.append(f"{where}.config must be an object")
        div = run.get("diverged_at_step", "missing")
        if div == "missing" or (div is not None and (isinstance(div, bool) or not isinstance(div, int))):
            out.append(f"{where}.diverged_at_step must be an int or null")
        curves, final = run.get("curves"), run.get("final")
        if not isinstance(curves, dict):
            out.append(f"{where}.curves must be an object")
            curves = {}
        for metric, curve in curves.items():
            if not isinstance(curve, dict) or not isinstance(curve.get("step"), list) \
                    or not isinstance(curve.get("value"), list):
                out.append(f"{where}.curves.{metric} needs 'step' and 'value' lists")
                continue
            steps, values = curve["step"], curve["value"]
            if len(steps) != len(values):
                out.append(f"{where}.curves.{metric}: {len(steps)} steps but {len(values)} values")
            if any(isinstance(s, bool) or not isinstance(s, int) for s in steps):
                out.append(f"{where}.curves.{metric}.step holds non-integers")
            elif any(b <= a for a, b in zip(steps, steps[1:])):
                out.append(f"{where}.curves.{metric}.step is not strictly increasing")
            if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
                   for v in values):
                out.append(f"{where}.curves.{metric}.value holds non-numbers")
        if not isinstance(final, dict):
            out.append(f"{where}.final must be an object")
        elif any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
                 for v in final.values()):
            out.append(f"{where}.final holds non-numbers")
    if not isinstance(doc.get(SMOKE, False), bool):
        out.append(f"'{SMOKE}' must be true or false")
    if not claims:
        return out
    claims = doc.get("claims")
    if not isinstance(claims, list):
        out.append("'claims' must be a list (use [] when an experiment states none)")
        claims = []
    for i, claim in enumerate(claims):
        if not isinstance(claim, dict) or any(not isinstance(claim.get(k), str) or not claim[k]
                                              for k in CLAIM_TEXT):
            out.append(f"claims[{i}] needs non-empty strings {', '.join(CLAIM_TEXT)}")
            continue
        if claim["verdict"] not in VERDICTS:
            out.append(f"claims[{i}].verdict {claim['verdict']!r} not one of {list(VERDICTS)}")
        out += [f"claims[{i}].evidence{p}" for p in _evidence_problems(claim.get("evidence"))]
    return out


CLAIM_TEXT = ("id", "claim", "source", "measured", "paper", "verdict")

# A smoke run (`--config NAME:quick`, `configs/default.shrink`) is marked `"smoke": true` at the
# top level of its summary.json: too short for any verdict, left out of the ledger by `bn-exp
# report`. Its claims keep what they measured but are inconclusive, saying why.
SMOKE = "smoke"
SMOKE_RULE = ("Smoke run (the seconds-long `:quick` settings): far too short for a verdict, so "
              "none is given; rerun without `:quick` for one. The rule it would apply: ")


def mark_smoke(doc: dict) -> dict:
    """`doc` marked as a smoke run: `"smoke": true`, every claim inconclusive with the reason."""
    claims = []
    for claim in doc.get("claims") or []:
        claim = dict(claim, verdict=INCONCLUSIVE)
        ev = dict(claim.get("evidence") or {})
        rule = ev.get("rule") or ""
        ev["rule"] = rule if rule.startswith(SMOKE_RULE) else SMOKE_RULE + rule
        claims.append(dict(claim, evidence=ev))
    out = {"experiment": doc.get("experiment"), SMOKE: True}
    out.update({k: v for k, v in doc.items() if k not in out})
    out["claims"] = claims
    return out


def _evidence_problems(ev: Any) -> list[str]:
    """How a claim's `evidence` ({seeds, effect, ci95, rule}) breaks the contract."""
    if not isinstance(ev, dict):
        return [" must be an object {seeds, effect, ci95, rule}"]
    out = []
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if not (isinstance(ev.get("seeds"), int) and not isinstance(ev["seeds"], bool) and ev["seeds"] >= 1):
        out.append(".seeds must be an integer >= 1")
    if "effect" not in ev or not (ev["effect"] is None or number(ev["effect"])):
        out.append(".effect must be a number or null")
    ci = ev.get("ci95", "missing")
    if ci != "missing" and ci is not None and not (
            isinstance(ci, list) and len(ci) == 2 and all(number(v) for v in ci) and ci[0] <= ci[1]):
        out.append(".ci95 must be [low, high] with low <= high, or null")
    elif ci == "missing":
        out.append(".ci95 must be [low, high] or null")
    if not isinstance(ev.get("rule"), str) or not ev["rule"]:
        out.append(".rule must state the verdict rule in words")
    return out


_NUMBER_LIST = re.compile(r"\[\s*((?:-?[0-9.eE+-]+|null)(?:,\s*(?:-?[0-9.eE+-]+|null))*)\s*\]")


def dumps(doc: Any) -> str:
    """Canonical JSON text: indented objects, one line per list of numbers (curves stay compact);
    non-finite numbers become null, NaN is never written."""
    text = json.dumps(clean(doc), indent=1, allow_nan=False)
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text) + "\n"


def _plain_write_mode(path: pathlib.Path) -> int:
    """The permissions `open(path, "w")` would leave: an existing file keeps its own, a new one
    gets 0o666 less the umask (mkstemp's 0o600 would hide results from other users)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`; the file gets
    the permissions a plain write would give it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _plain_write_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write(path: str | os.PathLike, doc: dict) -> None:
    """Validates `doc` against the contract, then writes it atomically."""
    bad = problems(json.loads(dumps(doc)))
    if bad:
        raise ValueError(f"{path}: summary breaks the contract: " + "; ".join(bad))
    atomic_write(path, dumps(doc))


def load(path: str | os.PathLike, *, claims: bool = True) -> dict:
    """Reads and validates a summary.json; raises ValueError naming the file and the problems."""
    path = pathlib.Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read summary ({err})") from None
    bad = problems(doc, claims=claims)
    if bad:
        raise ValueError(f"{path}: " + "; ".join(bad))
    return doc


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file such as metrics.jsonl; a torn last line (a writer killed
    mid-line) is dropped, a bad line anywhere else is an error naming the file and line."""
    lines = pathlib.Path(path).read_text().split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:  # no newline after it: the writer died while writing it
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON row; the file is corrupt") from None
    return rows


def drop_torn_line(path: str | os.PathLike) -> None:
    """Cuts a file back to its last complete line, so appending to it stays line-aligned."""
    path = pathlib.Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
