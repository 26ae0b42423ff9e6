"""Fault tests: `bn-exp run` / `bn-exp sweep` driven in-process with the bad input a user could give.

Every fault must end the same way: exit status 2, exactly one line on stderr that starts with
`bn-exp <command>: error:`, names the field (or file) at fault and holds no traceback, and nothing
written that a later run could mistake for a result. The strongest form of the last property holds
and is the one asserted: the test's whole tmp_path (which is also the current directory, so a
default `runs/...` workdir would land there too) is byte-for-byte what the test itself put there;
in particular no workdir is created.

The contrast case at the end: a finite learning rate that makes training diverge is a result, not
an error: exit 0 and a summary.json whose runs record `diverged_at_step`.
"""
from __future__ import annotations

import gzip
import hashlib
import pathlib

import numpy as np
import pytest

from bn_experiments import cli, summary

QUICK = ["--config", "fig1_mnist:quick"]
SWEEP_QUICK = ["--config", "lr_sweep:quick"]
SYNTHETIC = "--config.data.source=synthetic"

IDX_NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


# ------------------------------------------------------------------------------------------ helpers


def _snapshot(root: pathlib.Path) -> dict[str, str | None]:
    """Every path under root -> sha256 of its bytes (None for directories)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def user(tmp_path, monkeypatch, capfd):
    """Runs `bn-exp` from inside tmp_path and checks a fault ends cleanly."""
    monkeypatch.chdir(tmp_path)

    class User:
        workdir = tmp_path / "out" / "run"

        def fails(self, *args, command="run", names=(), workdir=None):
            """Runs `bn-exp COMMAND --workdir W ARGS...`; asserts a clean one-line failure naming
            every string of `names`, with nothing written under tmp_path; returns the line."""
            workdir = self.workdir if workdir is None else workdir
            capfd.readouterr()
            before = _snapshot(tmp_path)
            rc = cli.main([command, "--workdir", str(workdir), *args])
            out, err = capfd.readouterr()
            lines = err.splitlines()
            assert rc == 2, (rc, out, err)
            assert len(lines) == 1, err
            line = lines[0]
            assert line.startswith(f"bn-exp {command}: error: "), line
            assert "Traceback" not in err, err
            for name in names:
                assert name in line, (name, line)
            assert not workdir.exists() or workdir.is_file(), f"{workdir} was created"
            assert _snapshot(tmp_path) == before, "the failed command wrote files"
            assert not list(tmp_path.rglob("summary.json"))
            return line

    return User()


def _write_idx(path: pathlib.Path, array: np.ndarray, magic: int | None = None) -> None:
    """An IDX file (uint8 data) as MNIST ships it; `.gz` paths are gzipped."""
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    data = (magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            + array.tobytes())
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _idx_dir(root: pathlib.Path, n_train: int = 20, n_test: int = 10) -> pathlib.Path:
    """A small valid MNIST-format directory."""
    d = root / "idx"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        _write_idx(d / IDX_NAMES[f"x_{split}"], rng.integers(0, 256, (n, 28, 28)))
        _write_idx(d / IDX_NAMES[f"y_{split}"], np.arange(n) % 10)
    return d


# ------------------------------------------------------------------------- unknown keys, did-you-mean


@pytest.mark.parametrize("arg,key,suggestion", [
    ("--config.lerning_rate=0.1", "lerning_rate", "learning_rate"),
    ("--config.batchsize=32", "batchsize", "batch_size"),
    ("--config.model.activaton=relu", "model.activaton", "model.activation"),
    ("--config.model.widht=(3,)", "model.widht", "model.widths"),
    ("--config.optimizer.momentun=0.9", "optimizer.momentun", "optimizer.momentum"),
    ("--config.data.sorce=synthetic", "data.sorce", "data.source"),
])
def test_unknown_key_is_named_with_a_did_you_mean(user, arg, key, suggestion):
    line = user.fails(*QUICK, arg, names=(key,))
    assert f"did you mean {suggestion!r}" in line, line


def test_unknown_key_in_a_named_run_is_named_with_a_did_you_mean(user):
    line = user.fails(*QUICK, "--config.runs=('a: model.nrom=batchnorm',)", names=("model.nrom",))
    assert "did you mean 'model.norm'" in line, line


def test_run_names_must_be_unique(user):
    user.fails(*QUICK, "--config.runs=('a: seed=0', 'a: seed=1')", names=("runs", "unique"))


# ----------------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize("arg,field", [
    ("--config.steps=ten", "steps"),
    ("--config.batch_size=1.5", "batch_size"),
    ("--config.learning_rate=fast", "learning_rate"),
    ("--config.model.widths=abc", "model.widths"),
    ("--config.model.widths=(100, 'a')", "model.widths"),
    ("--config.model.tracked_units=(0, 500)", "model.tracked_units"),
    ("--config.data.standardize=maybe", "data.standardize"),
])
def test_wrong_type_is_named(user, arg, field):
    user.fails(*QUICK, SYNTHETIC, arg, names=(field,))


# ------------------------------------------------------------------------------ impossible sizes


@pytest.mark.parametrize("arg,field", [
    ("--config.steps=0", "steps"),
    ("--config.steps=-5", "steps"),
    ("--config.batch_size=0", "batch_size"),
    ("--config.batch_size=-60", "batch_size"),
    ("--config.eval_every=0", "eval_every"),
    ("--config.eval_every=-50", "eval_every"),
    ("--config.eval_every=7", "eval_every"),           # does not divide steps=200
    ("--config.model.widths=(100, 0, 100)", "model.widths"),
    ("--config.model.widths=(100, -3)", "model.widths"),
    ("--config.model.widths=()", "model.widths"),
    ("--config.population_batches=-1", "population_batches"),
    ("--config.points_per_program=0", "points_per_program"),
    ("--config.points_per_program=-1", "points_per_program"),
])
def test_non_positive_size_is_named(user, arg, field):
    # data.source=synthetic: were the check missing, the test would train on small data.
    user.fails(*QUICK, SYNTHETIC, arg, names=(field,))


@pytest.mark.parametrize("source,n_train", [("synthetic:16", 16), ("mnist_embedded", 8000)])
def test_batch_larger_than_the_dataset(user, source, n_train):
    user.fails(*QUICK, f"--config.data.source={source}", f"--config.batch_size={n_train + 1}",
               names=("batch_size", str(n_train)))


def test_batch_larger_than_an_idx_dataset(user, tmp_path):
    d = _idx_dir(tmp_path, n_train=20)
    user.fails(*QUICK, f"--config.data.source=idx:{d}", "--config.batch_size=21",
               names=("batch_size", "20"))


# ------------------------------------------------------------------- unknown datasets and choices


@pytest.mark.parametrize("arg,field", [
    ("--config.data.source=nope", "nope"),
    ("--config.data.source=", "data source"),
    ("--config.data.source=synthetic:0", "synthetic:0"),
    ("--config.data.source=synthetic:abc", "synthetic:abc"),
    ("--config.data.source=tfds:no_such_dataset", "tfds:no_such_dataset"),
    ("--config.data.source=idx:", "idx:"),
    ("--config.model.activation=swish", "model.activation"),
    ("--config.model.norm=layernorm", "model.norm"),
    ("--config.model.init=xavier", "model.init"),
    ("--config.optimizer.schedule=linear", "optimizer.schedule"),
    ("--config.optimizer.momentum=1.0", "optimizer.momentum"),
    ("--config.target_accuracy=1.5", "target_accuracy"),
    ("--config.seed=-1", "seed"),
    ("--config.model.bn_momentum=1.5", "model.bn_momentum"),
    ("--config.model.bn_epsilon=-1.0", "model.bn_epsilon"),
    ("--config.model.bn_epsilon=0.0", "model.bn_epsilon"),
    ("--config.saturation_threshold=-4.0", "saturation_threshold"),
    ("--config.ics_quantiles=maybe", "ics_quantiles"),
    ("--config.model.init_std=0.0", "model.init_std"),
    ("--config.model.init_std=nan", "model.init_std"),
])
def test_unknown_choice_is_named(user, arg, field):
    user.fails(*QUICK, arg, names=(field,))


def test_unknown_choice_in_a_named_run_is_named(user):
    user.fails(*QUICK, "--config.runs=('a: model.activation=swish',)", SYNTHETIC,
               names=("model.activation", "swish"))


# ------------------------------------------------------------------------------------- IDX files


def test_missing_data_directory(user):
    user.fails(*QUICK, "--config.data.source=idx:/nonexistent", names=("/nonexistent", "does not exist"))


def test_data_directory_is_a_file(user, tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"not a directory")
    user.fails(*QUICK, f"--config.data.source=idx:{f}", names=(str(f), "is not a directory"))


@pytest.mark.parametrize("missing", sorted(IDX_NAMES.values()))
def test_data_directory_missing_one_idx_file(user, tmp_path, missing):
    d = _idx_dir(tmp_path)
    (d / missing).unlink()
    user.fails(*QUICK, f"--config.data.source=idx:{d}", names=(missing,))


def _corrupt(d: pathlib.Path, how: str) -> str:
    """Corrupts one file of a valid IDX directory; returns the name the error must give."""
    x_train, y_train = d / IDX_NAMES["x_train"], d / IDX_NAMES["y_train"]
    if how == "bad magic (images)":
        _write_idx(x_train, np.zeros((20, 28, 28)), magic=0x0801)
        return x_train.name
    if how == "bad magic (labels)":
        _write_idx(y_train, np.zeros(20), magic=0x12345678)
        return y_train.name
    if how == "truncated data":
        x_train.write_bytes(x_train.read_bytes()[:-100])
        return x_train.name
    if how == "truncated header":
        x_train.write_bytes(x_train.read_bytes()[:10])
        return x_train.name
    if how == "empty file":
        y_train.write_bytes(b"")
        return y_train.name
    if how == "trailing bytes":
        y_train.write_bytes(y_train.read_bytes() + b"\0\0")
        return y_train.name
    if how == "labels out of range":
        _write_idx(y_train, np.full(20, 11))
        return y_train.name
    if how == "count mismatch":
        _write_idx(y_train, np.arange(19) % 10)
        return y_train.name
    if how == "image size mismatch":
        _write_idx(d / IDX_NAMES["x_test"], np.zeros((10, 14, 14)))
        return IDX_NAMES["x_test"]
    if how == "bad gzip":
        x_train.unlink()
        (d / (x_train.name + ".gz")).write_bytes(b"this is not gzip data at all")
        return x_train.name + ".gz"
    if how == "truncated gzip":
        x_train.unlink()
        gz = d / (x_train.name + ".gz")
        _write_idx(gz, np.zeros((20, 28, 28)))
        gz.write_bytes(gz.read_bytes()[:40])
        return gz.name
    raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "bad magic (images)", "bad magic (labels)", "truncated data", "truncated header", "empty file",
    "trailing bytes", "labels out of range", "count mismatch", "image size mismatch", "bad gzip",
    "truncated gzip"])
def test_corrupt_idx_file_is_named(user, tmp_path, how):
    d = _idx_dir(tmp_path)
    name = _corrupt(d, how)
    user.fails(*QUICK, f"--config.data.source=idx:{d}", names=(name,))


# ---------------------------------------------------------------------------------- the workdir


def test_workdir_under_a_regular_file(user, tmp_path):
    # Tests run as root, for whom permissions do not stop a write: a path under a regular file
    # cannot be created by anyone.
    f = tmp_path / "file.txt"
    f.write_text("keep me\n")
    workdir = f / "run"
    user.fails(*QUICK, SYNTHETIC, workdir=workdir, names=("--workdir", str(workdir)))
    assert f.read_text() == "keep me\n"


def test_workdir_is_a_regular_file(user, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me\n")
    user.fails(*QUICK, SYNTHETIC, workdir=f, names=("--workdir", str(f)))
    assert f.read_text() == "keep me\n"


# ---------------------------------------------------------------------------------------- sweeps


@pytest.mark.parametrize("grid,names", [
    ("(('seed', ()),)", ("'seed'", "empty")),
    ("(('learning_rate', (0.1, 1.0)), ('seed', ()))", ("'seed'", "empty")),
    ("(('lerning_rate', (0.1, 1.0)),)", ("lerning_rate", "did you mean 'learning_rate'")),
    ("(('model.activaton', ('relu',)),)", ("model.activaton", "did you mean 'model.activation'")),
    ("(('seed', (0, 1)), ('seed', (2,)))", ("'seed'", "twice")),
    ("(('seed',),)", ("grid entry",)),
    ("(('model.activation', ('relu', 'swish')),)", ("model.activation", "swish")),
    ("(('model.widths', ((100,), (0,))),)", ("model.widths",)),
    ("(('batch_size', (60, 0)),)", ("batch_size",)),
])
def test_bad_sweep_grid(user, grid, names):
    user.fails(*SWEEP_QUICK, f"--config.grid={grid}", command="sweep", names=names)


def test_sweep_of_a_config_without_a_grid(user):
    user.fails(*QUICK, command="sweep", names=("grid",))


def test_sweep_with_both_runs_and_grid(user):
    user.fails(*QUICK, "--config.grid=(('seed', (0, 1)),)", command="sweep", names=("runs", "grid"))


# ------------------------------------------------------------------------- invalid learning rates


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "0.0", "-0.1", "-1e10"])
def test_invalid_learning_rate(user, value):
    user.fails(*QUICK, SYNTHETIC, f"--config.learning_rate={value}", names=("learning_rate",))


@pytest.mark.parametrize("value", ["0", "-1.0", "1e999", "-1e999"])   # 1e999 parses as inf
def test_invalid_learning_rate_in_a_named_run(user, value):
    user.fails(*QUICK, f"--config.runs=('a: learning_rate={value}',)", names=("learning_rate",))


@pytest.mark.parametrize("values", ["(0.1, 0.0)", "(0.1, -1.0)", "(0.1, 1e999)", "(-1e999,)"])
def test_invalid_learning_rate_on_a_sweep_axis(user, values):
    user.fails(*SWEEP_QUICK, f"--config.grid=(('learning_rate', {values}),)", command="sweep",
               names=("learning_rate",))


# ------------------------------------------------------------- contrast: divergence is a result


def test_a_finite_learning_rate_that_diverges_is_a_result(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    workdir = tmp_path / "diverge"
    rc = cli.main(["run", *QUICK, "--workdir", str(workdir), "--progress=false", SYNTHETIC,
                   "--config.learning_rate=1e10", "--config.model.activation=relu",
                   "--config.steps=40", "--config.eval_every=20"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Traceback" not in err and "error" not in err
    doc = summary.load(workdir / "summary.json")
    assert [r["name"] for r in doc["runs"]] == ["no_bn", "bn"]
    for run in doc["runs"]:
        d = run["diverged_at_step"]
        assert isinstance(d, int) and 1 <= d <= 40, run["name"]
        assert f"{run['name']}: " in out and f"diverged at step {d}" in out
        assert run["final"]["diverged"] == 1.0 and run["final"]["test_accuracy"] is None
        assert run["curves"]["train_loss"]["step"][-1] == d - 1
        assert all(s < d for s in run["curves"]["test_accuracy"]["step"])
    # The run is finished: the same command again refuses to overwrite it.
    assert cli.main(["run", *QUICK, "--workdir", str(workdir), SYNTHETIC,
                     "--config.learning_rate=1e10"]) == 2
    assert "--restart" in capsys.readouterr().err


# ------------------------------------------------------------ config files, arguments and flags


def test_unknown_config_argument_lists_the_known_ones(user):
    user.fails("--config", "fig1_mnist:quik", names=("'quik'", "fig1_mnist:quick"))


def test_two_config_flags_are_an_error(user):
    user.fails(*QUICK, "--config", "lr_sweep", names=("--config", "twice"))


@pytest.mark.parametrize("flag,suggestion", [("--worktree", "--workdir"), ("--restat", "--restart"),
                                             ("--dryrun", "--dry-run"), ("--progres", "--progress")])
def test_misspelled_flag_gets_a_suggestion(user, flag, suggestion):
    user.fails(*QUICK, flag, names=(flag, f"did you mean {suggestion}"))


@pytest.mark.parametrize("arg,names", [
    ("--config.steps=1.5", ("steps", "an integer")),
    ("--config.checkpoint_every=1e3", ("checkpoint_every", "an integer")),
    ("--config.learning_rate=fast", ("learning_rate", "a number")),
    ("--config.model.widths=100", ("model.widths", "'(100,)'")),
    ("--config.model.tracked_units=0", ("model.tracked_units", "'(0,)'")),
    ("--config.data.standardize=maybe", ("data.standardize", "true or false")),
])
def test_a_value_of_the_wrong_kind_names_the_field_and_the_kind(user, arg, names):
    user.fails(*QUICK, SYNTHETIC, arg, names=names)


@pytest.mark.parametrize("source,names", [
    ("def get_config(arg=None):\n    return 1 +\n", ("line 2", "SyntaxError")),
    ("import ml_collections\n\ndef make_config():\n    return ml_collections.ConfigDict()\n",
     ("no get_config",)),
    ("def get_config(arg=None):\n    x = {}\n    return x['steps']\n", ("line 3", "KeyError")),
    ("import no_such_module_here\n", ("line 1", "ModuleNotFoundError")),
    ("def get_config(arg=None):\n    return {'steps': 5}\n", ("not an ml_collections.ConfigDict",)),
])
def test_a_broken_config_file_is_one_line_naming_file_and_line(user, tmp_path, source, names):
    path = tmp_path / "my_config.py"
    path.write_text(source)
    user.fails("--config", str(path), names=(str(path), *names))
