"""scripts/reproduce_all.sh: every committed result is rerun by the command that produced it."""
import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_dry_run_lists_every_committed_experiment_with_a_portable_command():
    out = subprocess.run(["bash", "scripts/reproduce_all.sh", "--dry-run"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    lines = out.splitlines()
    committed = sorted(str(p.parent.relative_to(ROOT / "results"))
                       for p in (ROOT / "results").rglob("provenance.json"))
    assert committed and sorted(line.split()[0] for line in lines[:-1]) == committed
    for line in lines[:-1]:
        name = line.split()[0]
        cmd = line.split("min  ", 1)[1]
        assert cmd.startswith("bn-exp ") and f"--workdir results/{name}" in cmd
        assert "--restart" in cmd.split() and "../shared" not in cmd
        recorded = json.loads((ROOT / "results" / name / "provenance.json").read_text())["command"]
        assert recorded.split("--config", 1)[1].split()[0] in cmd  # the same config
    total = sum(json.loads(p.read_text()).get("wall_seconds") or 0
                for p in (ROOT / "results").rglob("provenance.json"))
    assert lines[-1].startswith(f"{len(committed)} experiments, {total / 3600:.1f} h")
