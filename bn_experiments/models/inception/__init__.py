"""Inception-style convolutional networks on the functional BN core (bn_experiments.batchnorm).

- `layers`: the building blocks (conv module, Inception module, pooling, dense head) as pure
  functions over a static plan;
- `family`: the static config, fields, checks and contract functions both families share;
- `small_inception`: Zhang et al. (2017)'s CIFAR-scale Inception (model.name=small_inception);
- `bn_inception`: the paper's ImageNet network, Figure 5 (model.name=bn_inception).
- `linen`: the same networks from `flax.linen` layers (the parity tests' and the benchmark's
  reference).

The registry (bn_experiments.models) imports the two families; nothing else needs to.
"""
