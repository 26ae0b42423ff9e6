"""BN-Inception: the ImageNet network of Ioffe & Szegedy (2015, Appendix, Figure 5), 224 x 224 x 3.

GoogLeNet with each 5x5 conv replaced by two 3x3 convs, BN before every nonlinearity, the first
conv separable (7x7 depthwise with depth multiplier 8, then 1x1 to 64 channels), stride-2 inside
modules 3c and 4e (max pool + pass through), average pooling in the other modules' pool branch
(max in 5b), global average pooling, a 1000-way classifier. The table as printed:

  layer       1x1  3x3red 3x3  d3x3red d3x3  pool+proj   printed out  built out
  3a           64    64    64     64    96   avg + 32        256         256
  3b           64    64    96     64    96   avg + 64        320         320
  3c (s2)       -   128   160     64    96   max + pass      576         576
  4a          224    64    96     96   128   avg + 128       576         576
  4b          192    96   128     96   128   avg + 128       576         576
  4c          160   128   160    128   160   avg + 128       576         608
  4d           96   128   192    160   192   avg + 128       576         608
  4e (s2)       -   128   192    192   256   max + pass     1024        1056
  5a          352   192   320    160   224   avg + 128      1024        1024
  5b          352   192   320    192   224   max + 128      1024        1024

The table does not add up: 4c's and 4d's branches sum to 608 channels, not 576 (so 4e, which
passes its input through, gives 1056, not 1024), and the stride-2 modules' printed sizes are
those before the stride. RESOLUTION CHOSEN HERE: every branch width exactly as printed (as the
tensorpack, CNTK and Caffe ports do); the printed output sizes are taken as derived numbers with
errors. (TF-slim's inception_v2 instead shrinks 4c's and 4d's pool projections to 96 so that every
module gives 576.) Stride 2 sits on the last conv of the 3x3 and double-3x3 branches and on the
max pool; all padding is "SAME", so 224 -> 112 -> 56 -> 28 -> 14 -> 7.

Parameters of this network at width 1 with 1000 classes: 11,278,528 with BN (conv weights,
gamma and beta, classifier; no conv biases), 11,268,512 without BN (conv biases instead of
gamma and beta) -- against the 13.6M the paper's text states. No public port reaches 13.6M; the gap
is unexplained (tests/test_inception.py asserts these counts).
"""
from __future__ import annotations

from bn_experiments.models.inception.family import base_fields, make_family, scaled
from bn_experiments.models.inception.layers import Conv, Mixed, Pool

# (name, 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pool kind, pool projection);
# 0 for 1x1 and projection = none; a module without projection is stride 2 (pass through).
MODULES = (
    ("3a", 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 0, 128, 160, 64, 96, "max", 0),
    ("4a", 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 0, 128, 192, 192, 256, "max", 0),
    ("5a", 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 352, 192, 320, 192, 224, "max", 128),
)
PARAMS_BN = 11_278_528      # width 1, 1000 classes, with BN
PARAMS_NO_BN = 11_268_512   # width 1, 1000 classes, without BN
PARAMS_STATED = 13_600_000  # the paper's text


def module(ch1, red3, ch3, redd, chd, pool_kind, proj, c) -> Mixed:
    """One Inception module of the table; stride 2 when it has neither 1x1 nor projection."""
    s = 1 if proj else 2
    branches = []
    if ch1:
        branches.append((Conv(c(ch1), 1),))
    branches.append((Conv(c(red3), 1), Conv(c(ch3), 3, s)))
    branches.append((Conv(c(redd), 1), Conv(c(chd), 3), Conv(c(chd), 3, s)))
    pool = Pool(pool_kind, 3, s)
    branches.append((pool, Conv(c(proj), 1)) if proj else (pool,))
    return Mixed(tuple(branches))


def build_plan(width: float, input_shape: tuple) -> tuple:
    """The plan of BN-Inception at width multiplier `width`."""
    c = lambda n: scaled(n, width)  # noqa: E731
    stem = (Conv(c(64), 7, 2, depth_multiplier=8), Pool("max", 3, 2),
            Conv(c(64), 1), Conv(c(192), 3), Pool("max", 3, 2))
    return stem + tuple(module(*m[1:], c=c) for m in MODULES)


def fields():
    """The family's own fields: `model.width`, `model.num_classes` (1000), `model.dropout`."""
    return base_fields(num_classes=1000)


FAMILY = make_family("bn_inception", build_plan, fields, default_input=(224, 224, 3))
