"""Experiment configs: `get_config(arg)` files, shipped in the wheel as `bn_experiments.configs`."""
