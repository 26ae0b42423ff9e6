#!/usr/bin/env bash
# Reruns every committed experiment at its committed scale, then regenerates the ledger.
#
#   scripts/reproduce_all.sh            # everything, one experiment after another
#   scripts/reproduce_all.sh --dry-run  # the commands and the time each took when committed
#
# Each command is the one recorded in results/<experiment>/provenance.json (so the rerun is the
# committed one), with `--restart` (overwrite the committed workdir) and the official MNIST taken
# from the `mnist` source (your $BN_EXP_DATA_DIR/mnist or the per-user cache, downloaded once from
# the public mirrors) where the commit used a local copy (`idx:<dir>`). Then `bn-exp report`.
set -euo pipefail
cd "$(dirname "$0")/.."
python - "$@" <<'PY'
import json, pathlib, re, shlex, subprocess, sys, time

dry = "--dry-run" in sys.argv[1:]
plan, total = [], 0.0
for prov in sorted(pathlib.Path("results").rglob("provenance.json")):
    doc = json.loads(prov.read_text())
    cmd = re.sub(r"idx:[^ ]*/mnist\b", "mnist", doc["command"])
    if "--restart" not in cmd.split():
        cmd += " --restart"
    plan.append((str(prov.parent.relative_to("results")), cmd, float(doc.get("wall_seconds") or 0.0)))
    total += plan[-1][2]
for name, cmd, secs in plan:
    print(f"{name:32s} {secs / 60:6.1f} min  {cmd}", flush=True)
print(f"{len(plan)} experiments, {total / 3600:.1f} h when committed (a 2-core CPU)", flush=True)
if dry:
    sys.exit(0)
start = time.time()
for name, cmd, _ in plan:
    print(f"== {name}: {cmd}", flush=True)
    subprocess.run(shlex.split(cmd), check=True)
subprocess.run(["bn-exp", "report"], check=True)
print(f"done in {(time.time() - start) / 3600:.2f} h", flush=True)
PY
