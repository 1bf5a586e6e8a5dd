"""The LR range test (Smith's Cyclical-LR paper; torch-lr-finder; fastai's ``lr_find``) as pure functions.

Schedule (torch-lr-finder's ``ExponentialLR`` / ``LinearLR``), with ``r = min(s, n - 1) / (n - 1)``::

    exp:     lr(s) = start * (end / start) ** r
    linear:  lr(s) = start + (end - start) * r

so step 0 runs at ``start`` and step ``n - 1`` at ``end``; later steps hold ``end``. fastai's ``SchedExp``
uses ``r = s / n`` instead: same step 0, but its last step ``n - 1`` stops one ratio short of ``end``
(``start * (end / start) ** ((n - 1) / n)``).

Loss tracking (what the server folds over the losses a test reports), torch-lr-finder's rules::

    smoothed[0] = loss[0]
    smoothed[i] = smooth_f * loss[i] + (1 - smooth_f) * smoothed[i - 1]     (smooth_f == 0: no smoothing)
    best        = min(smoothed[0..i]);   stop at the first i with smoothed[i] > diverge_th * best

A loss that is not finite stops the test too; the ratio rule applies only while ``best > 0`` (the libraries
assume positive losses: with a negative best torch-lr-finder's rule would stop at once). ``core.lrfinder``
reads the finished history (its ``seeded`` smoothing and ``divergence_index`` give the same numbers).

``smooth_f`` is the weight of the *new* loss. fastai names the weight of the *history* ``beta`` (0.98), so
``smooth_f = 1 - beta``; fastai also divides by ``1 - beta ** (i + 1)`` (debiasing) where torch-lr-finder
seeds the average with the first loss, and stops at ``4 * best`` where torch-lr-finder's default is 5.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from lrserve.schemas.core.schedule import Column, Steps, ValueFn, Values


def lr_range(start: Column, end: Column, *, num_steps: int, mode: Literal["exp", "linear"] = "exp") -> ValueFn:
    """The range test's LR: from ``start`` at step 0 to ``end`` at step ``num_steps - 1``, then held."""
    if num_steps < 2:
        raise ValueError("num_steps must be >= 2")
    if mode == "exp" and (np.any(start <= 0) or np.any(end <= 0)):
        raise ValueError("an exponential range needs start and end > 0")
    last = num_steps - 1

    def lr(steps: Steps) -> Values:
        r = np.minimum(np.asarray(steps, dtype=np.int64), last).astype(np.float64)[None, :] / last
        if mode == "exp":
            return start * np.power(end / start, r)
        return start + (end - start) * r

    return lr
