"""Input transforms computed from a dataset's training split and applied to both splits.

`load(standardize=True)` removes one scalar mean and std of the training pixels;
`load(whiten=...)` applies one of the per-pixel or decorrelating transforms of `whitened`. Both
use training statistics only, so nothing of the test split leaks into training.
"""
from __future__ import annotations

import dataclasses

import numpy as np


def _error():
    from bn_experiments.data import DataError  # data imports this module: import late
    return DataError


#: Input transforms of :func:`whitened`, by name ("none" leaves the pixels as they are).
WHITENINGS = ("none", "standardize", "pca", "zca")
#: Added to every variance / eigenvalue before dividing by its square root, so directions in
#: which the training pixels hardly vary (MNIST's constant border pixels, its hundreds of
#: near-empty principal directions) are not blown up to unit variance. Pixels are in [0, 1], the
#: largest MNIST pixel variance is about 0.2 and its top eigenvalue about 5.
WHITEN_EPSILON = 1e-3


def whitened(ds, kind: str, epsilon: float = WHITEN_EPSILON):
    """``ds`` with its inputs transformed by statistics of the training split (both splits).

    The transforms LeCun et al. (1998) and Wiesler & Ney (2011) compare, which Ioffe & Szegedy
    (Sec. 2) cite for "training converges faster if its inputs are whitened": with x the
    flattened image, mu and C the training mean and covariance, C = V diag(lam) V^T,

    - ``standardize``: per pixel, (x - mu) / sqrt(var + epsilon) (zero mean, unit variance,
      still correlated; unlike ``load(standardize=True)``, which uses one scalar mean and std);
    - ``pca``: (x - mu) V diag(lam + epsilon)^-1/2: decorrelated and scaled, in the principal
      axes (largest variance first; each axis's sign fixed so its largest entry is positive), so
      the result is no longer an image: only for models that flatten their input;
    - ``zca``: the same, rotated back, (x - mu) V diag(lam + epsilon)^-1/2 V^T: the whitened
      input closest to the original, still an image.

    Computed in float64 and returned as float32 of the original shape.
    """
    if kind not in WHITENINGS:
        raise _error()(f"whiten={kind!r} is unknown; use one of {', '.join(WHITENINGS)}")
    if kind == "none":
        return ds
    flat = lambda a: np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)  # noqa: E731
    x = flat(ds.x_train)
    mean = x.mean(0)
    if kind == "standardize":
        scale = 1.0 / np.sqrt(x.var(0) + epsilon)
        transform = lambda a: (flat(a) - mean) * scale  # noqa: E731
    else:
        centered = x - mean
        lam, vecs = np.linalg.eigh(centered.T @ centered / x.shape[0])
        lam, vecs = np.maximum(lam[::-1], 0.0), vecs[:, ::-1]
        rows = np.argmax(np.abs(vecs), axis=0)
        vecs = vecs * np.sign(vecs[rows, np.arange(vecs.shape[1])])
        matrix = vecs / np.sqrt(lam + epsilon)
        if kind == "zca":
            matrix = matrix @ vecs.T
        transform = lambda a: (flat(a) - mean) @ matrix  # noqa: E731
    out = lambda a: transform(a).astype(np.float32).reshape(a.shape)  # noqa: E731
    return dataclasses.replace(ds, x_train=out(ds.x_train), x_test=out(ds.x_test), whitening=kind)


def standardized(ds):
    """`ds` with one scalar mean and std of the training pixels removed (both splits)."""
    x = np.asarray(ds.x_train, dtype=np.float64)
    mean, std = float(x.mean()), float(x.std())
    if not std > 0.0:
        raise _error()(f"dataset {ds.name!r}: training pixels have zero variance; cannot standardize")
    f = lambda a: ((np.asarray(a, dtype=np.float64) - mean) / std).astype(np.float32)  # noqa: E731
    return dataclasses.replace(ds, x_train=f(ds.x_train), x_test=f(ds.x_test),
                               pixel_mean=mean, pixel_std=std)
