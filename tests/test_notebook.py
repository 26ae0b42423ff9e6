"""notebooks/colab_quickstart.ipynb: committed clean, and its commands are valid configs.

Fast checks only (no training, no kernel): CI executes the whole notebook with
`python scripts/run_notebook.py notebooks/colab_quickstart.ipynb` (see .ci/run).
"""
import ast
import json
import pathlib

import pytest

from bn_experiments import cli
from bn_experiments import config as config_lib
from bn_experiments import sweep
from bn_experiments.configs import default

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "colab_quickstart.ipynb"


def _cells():
    nb = json.loads(NOTEBOOK.read_text())
    return nb, {cell.get("id"): cell for cell in nb["cells"]}


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_notebook_is_committed_clean():
    nb, cells = _cells()
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    for cell in code:
        ast.parse(_source(cell))
    assert {"settings", "install", "accelerator", "fig1", "sweep", "ledger"} <= set(cells)
    assert "Ioffe" in _source(nb["cells"][0])


@pytest.mark.parametrize("quick", ["1", ""])
def test_notebook_commands_are_valid_configs(quick, monkeypatch, tmp_path):
    """Runs the settings, Figure 1 and sweep cells with `cli.main` replaced by a recorder, then
    parses and validates each recorded command exactly as `bn-exp` would, without training."""
    pytest.importorskip("IPython")
    _, cells = _cells()
    monkeypatch.setenv("BN_EXP_NOTEBOOK_QUICK", quick)
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(list(argv)) or 0)
    namespace = {}
    for name in ("settings", "fig1", "sweep"):
        exec(compile(_source(cells[name]), name, "exec"), namespace)
    assert namespace["QUICK"] is (quick == "1")
    assert [argv[0] for argv in calls] == ["run", "sweep"]
    sizes = []
    for argv in calls:
        cfg, workdir, restart, progress = cli._load_config(argv[1:])
        config_lib.validate(cfg, reference=default.get_config())
        assert restart and progress is not namespace["QUICK"]
        assert pathlib.Path(workdir).parent == namespace["OUTPUT_DIR"]
        sizes.append((cfg.steps, len(sweep.expand(cfg))))  # checks grid keys and every run
    (fig1_steps, fig1_runs), (sweep_steps, sweep_runs) = sizes
    assert fig1_runs == (2 if namespace["QUICK"] else 10)  # quick: one seed; else 5 per network
    if quick:  # seconds-long in CI
        assert fig1_steps <= 500 and sweep_steps <= 100 and sweep_runs <= 4
    else:  # the paper's Figure 1 and a small sweep
        assert fig1_steps == 50_000 and sweep_runs <= 40


def _install(monkeypatch, tmp_path, **settings):
    """Runs the install cell as if bn_experiments were not installed, with pip recorded instead
    of run; returns (pip command, constraints text) or raises the cell's error."""
    import importlib.util
    import subprocess
    _, cells = _cells()
    monkeypatch.chdir(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bn_experiments" else real(name, *a))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    namespace = {"LOCAL_CLONE": "", "WHEEL": "", "REPO_URL": "", "pathlib": pathlib, **settings}
    exec(compile(_source(cells["install"]), "install", "exec"), namespace)
    (command,) = calls
    constraints = command[command.index("--constraint") + 1]
    return command, pathlib.Path(constraints).read_text()


def test_install_cell_installs_from_a_clone_a_wheel_or_a_url_keeping_the_runtimes_jax(
        monkeypatch, tmp_path):
    import jax
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "pyproject.toml").write_text("[project]\n")
    wheel = tmp_path / "bn_experiments-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    for settings, target in [({"LOCAL_CLONE": str(clone)}, str(clone)),
                             ({"WHEEL": str(wheel)}, str(wheel)),
                             ({"REPO_URL": "https://example.org/x/bn-experiments"},
                              "bn-experiments @ git+https://example.org/x/bn-experiments")]:
        command, constraints = _install(monkeypatch, tmp_path, **settings)
        assert command[-1] == target and command[1:4] == ["-m", "pip", "install"]
        assert f"jax=={jax.__version__}" in constraints.splitlines()


@pytest.mark.parametrize("settings,message", [
    ({}, "set LOCAL_CLONE"),
    ({"LOCAL_CLONE": "/nonexistent/clone"}, "no pyproject.toml"),
    ({"WHEEL": "/nonexistent/x.whl"}, "no such file"),
])
def test_install_cell_says_what_to_set_when_it_cannot_install(monkeypatch, tmp_path, settings, message):
    with pytest.raises((RuntimeError, FileNotFoundError), match=message):
        _install(monkeypatch, tmp_path, **settings)


def test_install_cell_states_the_oldest_supported_jax_of_pyproject():
    import re
    _, cells = _cells()
    stated = re.search(r'OLDEST_JAX = "([0-9.]+)"', _source(cells["install"])).group(1)
    pyproject = (NOTEBOOK.parents[1] / "pyproject.toml").read_text()
    assert f'"jax>={stated}' in pyproject
