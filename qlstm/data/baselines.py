"""Reference predictors an LSTM has to beat: persistence and a linear autoregression.

Both work on the normalised windows of :func:`qlstm.data.make_windows`, so their RMSE is in the
same units as the model's (the paper reports RMSE of the normalised voltage).

* persistence: every future step equals the last observed target value;
* linear AR: ``y = [x_1 .. x_L (all channels), 1] @ W``, one least-squares fit of all ``L C + 1``
  coefficients per horizon step on the training windows (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qlstm.data.windows import Windows
from qlstm.errors import QlstmError


def persistence(x: np.ndarray, horizon: int, target_channel: int = 0) -> np.ndarray:
    """(N, L, C) windows -> (N, horizon): the last value of the target channel, repeated."""
    last = np.asarray(x, dtype=np.float64)[:, -1, target_channel]
    return np.repeat(last[:, None], horizon, axis=1)


def _design(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x.reshape(len(x), -1), np.ones((len(x), 1))], axis=1)


@dataclass(frozen=True)
class LinearAR:
    """A fitted linear autoregression: ``coef`` (L*C + 1, k), the last row the intercept."""

    coef: np.ndarray
    history: int
    channels: int

    @classmethod
    def fit(cls, w: Windows) -> LinearAR:
        """Least squares on training windows (all fitted in memory)."""
        n, history, channels = w.x.shape
        if n < history * channels + 1:
            raise QlstmError(
                f"linear AR: {n} training windows cannot determine {history * channels + 1} coefficients"
            )
        coef, *_ = np.linalg.lstsq(_design(w.x), np.asarray(w.y, dtype=np.float64), rcond=None)
        return cls(coef, history, channels)

    @classmethod
    def from_normal_equations(cls, ata: np.ndarray, aty: np.ndarray, history: int, channels: int) -> LinearAR:
        """Solve ``A^T A W = A^T y`` accumulated batch by batch (for more windows than fit in memory)."""
        coef, *_ = np.linalg.lstsq(ata, aty, rcond=None)
        return cls(coef, history, channels)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if tuple(np.shape(x)[1:]) != (self.history, self.channels):
            raise QlstmError(
                f"linear AR: windows of shape {np.shape(x)[1:]}, fitted on ({self.history}, {self.channels})"
            )
        return _design(x) @ self.coef


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """Root-mean-square error over all windows and horizon steps."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(d**2)))
