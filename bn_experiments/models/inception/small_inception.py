"""The "small Inception" of Zhang et al. (2017, "Understanding deep learning requires rethinking
generalization", Appendix): a CIFAR-scale Inception for 28 x 28 crops, about 1.65M parameters.

conv(96, 3x3); Inception(32 + 32), Inception(32 + 48); Downsample(80); Inception(112 + 48),
(96 + 64), (80 + 80), (48 + 96); Downsample(96); Inception(176 + 160) x 2; global mean pool;
10-way dense. An Inception module here concatenates a 1x1 and a 3x3 conv module; a Downsample
concatenates a 3x3 stride-2 conv module and a 3x3 stride-2 max pool. Padding is "SAME"
everywhere, so 28 -> 14 -> 7 and 32 -> 16 -> 8 (the count of parameters does not depend on it).

Parameters at width 1 for 3-channel input: 1,649,402 counting conv biases and the dense layer
(the network without BN), the number published for it; with BN the conv biases (1,712) give way
to BN's gamma and beta (3,424). `model.width` scales every conv's channels (the CPU experiments
of configs/inception_variants.py train a narrow copy). Works for any H x W x C input, e.g.
MNIST's 28 x 28 x 1 and CIFAR-10's 32 x 32 x 3.
"""
from __future__ import annotations

from bn_experiments.models.inception.family import base_fields, make_family, scaled
from bn_experiments.models.inception.layers import Conv, Mixed, Pool

PARAMS_NO_BN_RGB = 1_649_402  # width 1, 3-channel input, conv biases + dense, no BN


def build_plan(width: float, input_shape: tuple) -> tuple:
    """The plan of the small Inception at width multiplier `width` (any input size)."""
    c = lambda n: scaled(n, width)  # noqa: E731

    def inception(ch1, ch3):
        return Mixed(((Conv(c(ch1), 1),), (Conv(c(ch3), 3),)))

    def downsample(ch3):
        return Mixed(((Conv(c(ch3), 3, 2),), (Pool("max", 3, 2),)))

    return (Conv(c(96), 3), inception(32, 32), inception(32, 48), downsample(80),
            inception(112, 48), inception(96, 64), inception(80, 80), inception(48, 96),
            downsample(96), inception(176, 160), inception(176, 160))


def fields():
    """The family's own fields: `model.width`, `model.num_classes` (10), `model.dropout`."""
    return base_fields(num_classes=10)


FAMILY = make_family("small_inception", build_plan, fields, default_input=(28, 28, 1))
