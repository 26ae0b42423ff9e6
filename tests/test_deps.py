"""The supported dependency range: pyproject.toml's lower bounds are the set CI tests as the oldest.

.ci/run installs `.ci/oldest.txt` as pip constraints into a second environment and runs the whole
suite there; these checks keep the three places that state the range in step (pyproject.toml,
.ci/oldest.txt, the notebook's OLDEST_JAX is checked in test_notebook.py) and that what is
installed is inside it.
"""
from __future__ import annotations

import pathlib
import re
from importlib import metadata

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _lower_bounds() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    deps = text[text.index("dependencies = ["):text.index("]", text.index("dependencies = ["))]
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', deps))


def _pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "oldest.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_every_dependency_has_a_lower_bound_and_the_oldest_set_pins_it():
    bounds, pins = _lower_bounds(), _pins()
    assert set(bounds) <= set(pins), set(bounds) - set(pins)
    for name, low in bounds.items():
        assert pins[name] == low, (name, pins[name], low)
    assert pins["jaxlib"] == pins["jax"]


def test_installed_versions_are_inside_the_supported_range():
    for name, low in _lower_bounds().items():
        assert _version(metadata.version(name)) >= _version(low), (name, metadata.version(name))
