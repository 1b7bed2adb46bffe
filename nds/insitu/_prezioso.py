"""The 3x3 letter patterns of Prezioso et al., Nature 521, 61 (2015), and their noisy variants.

Three classes of stylized 3x3 black/white letters, "z", "v" and "n"; each class has its ideal
pattern and the nine variants with one pixel flipped: 30 patterns (as described in the paper,
recalled; the exact pixels of the paper's figure were not checked here, so the stylized forms
below are an assumption: "z" = full top row, centre, full bottom row; "v" = the two side
columns' upper pixels meeting at the bottom centre; "n" = an arch). Pixels are encoded as
inputs +1 (black) and −1 (white): the paper applies them as ±0.1 V read voltages (recalled).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LETTERS", "letter_patterns"]

#: the ideal 3x3 patterns (1 = black), row by row
LETTERS: dict[str, np.ndarray] = {
    "z": np.array([[1, 1, 1], [0, 1, 0], [1, 1, 1]]),
    "v": np.array([[1, 0, 1], [1, 0, 1], [0, 1, 0]]),
    "n": np.array([[1, 1, 1], [1, 0, 1], [1, 0, 1]]),
}


def letter_patterns() -> tuple[np.ndarray, np.ndarray]:
    """The 30 training patterns: ``x`` of shape (30, 9) with entries ±1 (black = +1) and
    labels ``y`` (30,) in 0, 1, 2 for "z", "v", "n"; for each class the ideal pattern first,
    then the nine one-pixel flips in pixel order."""
    xs, ys = [], []
    for label, pat in enumerate(LETTERS.values()):
        base = pat.reshape(-1).astype(np.float64)
        xs.append(base)
        ys.append(label)
        for i in range(9):
            v = base.copy()
            v[i] = 1.0 - v[i]
            xs.append(v)
            ys.append(label)
    x = 2.0 * np.stack(xs) - 1.0
    return x, np.asarray(ys, np.int32)
