"""The experiments registry: modules found by name, one registration each, a plain fallback."""
import pytest

from bn_experiments import experiments
from bn_experiments.probe import Probe


def test_every_module_registers_itself_under_its_name():
    import pkgutil
    modules = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                     if not m.name.startswith("_"))
    assert experiments.names() == modules
    for name in modules:
        exp = experiments.get(name)
        assert exp.name == name and callable(exp.claims)


def test_unknown_experiment_is_plain():
    exp = experiments.get("no_such_experiment")
    assert exp.claims([]) == [] and exp.figures is None and exp.probe is None
    assert experiments.compute_claims("no_such_experiment", [{"name": "x"}]) == []


def test_register_refuses_a_second_different_registration():
    exp = experiments.Experiment("registry_test_xyz", probe=Probe(lambda inputs: {}))
    try:
        assert experiments.register(exp) is exp
        assert experiments.register(exp) is exp  # the same object again: a module re-imported
        with pytest.raises(ValueError, match="registered twice"):
            experiments.register(experiments.Experiment("registry_test_xyz"))
        assert experiments.get("registry_test_xyz").probe is exp.probe
    finally:
        experiments._REGISTRY.pop("registry_test_xyz", None)


def test_a_probe_is_a_probe():
    probed = [n for n in experiments.names() if experiments.get(n).probe]
    assert {"scale_invariance", "fig1"} <= set(probed) and "fig1_calibration" not in probed
    assert all(isinstance(experiments.get(n).probe, Probe) for n in probed)
