"""Shared sweep-figure helpers (bn_experiments/plotting_sweeps.py): fast, no training."""
from __future__ import annotations

from figure_fixtures import NORMS, check_pngs, make_sweep_summary

from bn_experiments import plotting, plotting_sweeps


def test_a_sweep_not_over_x_falls_back_to_the_generic_figure(tmp_path):
    doc = make_sweep_summary(tmp_path, "lr_sweep", [NORMS, ("learning_rate", (0.1,))], steps=300)
    paths = plotting_sweeps.figures_vs_x(doc, tmp_path, xkey="learning_rate", prefix="lr_sweep",
                                         title="t", xlabel="learning rate")
    check_pngs(paths, tmp_path, ["test_accuracy.png"])


def test_line_styles_colour_by_bn_and_labels_put_bn_last():
    keys = ["model.activation", "model.norm"]
    combos = [("sigmoid", "none"), ("sigmoid", "batchnorm"), ("relu", "none"), ("relu", "batchnorm")]
    styles = plotting_sweeps.line_styles(keys, combos)
    assert [styles[c]["color"] for c in combos] == [plotting.NORM_COLORS[n] for _, n in combos]
    assert styles[combos[0]]["linestyle"] == styles[combos[1]]["linestyle"] != \
        styles[combos[2]]["linestyle"]
    assert plotting_sweeps.combo_label(keys, combos[1]) == "sigmoid, BN"
    assert plotting_sweeps.combo_label(keys, combos[2], long_norm=True) == "relu, Without BN"
    assert plotting_sweeps.value_label("model.widths", (100, 100, 100)) == "3 hidden layers × 100"


def test_hidden_layers_from_curves_or_final_means():
    runs = [{"name": "a", "curves": {"ics_w1_layer2": {}, "ics_w1_layer10": {}, "saturation_layer3": {}},
             "final": {"mean_ics_w1_layer1": 0.1}}]
    assert plotting_sweeps.hidden_layers(runs, "ics_w1") == [1, 2, 10]
    assert plotting_sweeps.hidden_layers(runs, "saturation") == [3]
