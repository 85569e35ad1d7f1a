"""Window arithmetic shared by training (`jaxprune.train`) and the Lyapunov kernels
(`jaxprune.lyapunov`): how a recorded weight trajectory is cut into windows, and which optimizer
step each window ends at.

Terms (steps are counted from 1; step ``s`` is the ``s``-th optimizer update):

* trajectory ``w[0..T-1]``: ``w[i]`` holds the weights after step ``i + 1`` (``T = n_steps``).
* window ``k`` (from 0) covers ``w[stride*k : stride*k + window]``. Only complete windows count:
  ``n_windows = (T - window) // stride + 1`` for ``T >= window``, else 0.
* its end step, the step after which its last entry was written, is ``stride*k + window``
  (``= stride*(k + 1) + offset`` with the default ``offset = window - stride``). For the paper's
  window 50 / stride 45 that is ``int(50 * 0.9 * (k + 1) + 5)``: 50, 95, 140, ...

Example: 100 recorded steps, window 50, stride 45: windows cover ``w[0:50]`` and ``w[45:95]``
(``w[90:140]`` is incomplete), so ``n_windows(100, 50, 45) == 2`` and
``window_end_steps(2, 50, 45)`` is ``[50, 95]``.

Plain Python / NumPy on static integers (shapes): usable while tracing a jitted function.
"""

from __future__ import annotations

import numpy as np

__all__ = ["steps_per_epoch", "n_windows", "window_end_steps", "max_windows_per_epoch"]


def _check_positive(**values: int) -> None:
    # a zero stride would divide by zero and a negative one count windows backwards
    for name, v in values.items():
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Mini-batches (optimizer steps) per epoch: ``ceil(n_train / batch_size)``.

    The last batch may be partial (PyTorch's ``drop_last=False``): 300 examples in batches of 32
    are 10 steps.
    """
    _check_positive(batch_size=batch_size)
    return -(-int(n_train) // int(batch_size))


def n_windows(n_steps: int, window: int = 50, stride: int = 45) -> int:
    """Number of complete windows in a trajectory of `n_steps` recorded steps.

    ``(n_steps - window) // stride + 1`` when ``n_steps >= window``, else 0. Example:
    ``n_windows(100, 50, 45) == 2`` (``w[0:50]``, ``w[45:95]``); ``n_windows(49, 50, 45) == 0``.
    Defaults are the paper's window 50 / stride 45.
    """
    _check_positive(window=window, stride=stride)
    return 0 if n_steps < window else (n_steps - window) // stride + 1


def window_end_steps(n_windows: int, window: int = 50, stride: int = 45, offset: int | None = None) -> np.ndarray:
    """End step (1-based optimizer step) of windows ``k = 0 .. n_windows - 1``.

    ``stride * (k + 1) + offset``; the default ``offset = window - stride`` gives
    ``stride * k + window``, the step after which window ``k``'s last entry was written. For the
    paper's window 50 / stride 45 that is its ``r_k = int(50 * 0.9 * (k + 1) + 5)``: 50, 95, 140.
    The paper hard-coded the ``+ 5``; ``offset=5`` reproduces it for other windows (e.g. its
    window 200 / stride 180 scripts).

    Returns:
      int64 array of shape ``(n_windows,)``.
    """
    if offset is None:
        offset = window - stride
    return stride * (np.arange(n_windows, dtype=np.int64) + 1) + offset


def max_windows_per_epoch(n_steps_epoch: int, stride: int) -> int:
    """Most windows that can complete inside one epoch of `n_steps_epoch` steps, whatever step the
    epoch starts at: ``(n_steps_epoch - 1) // stride + 1`` (= ``ceil(n_steps_epoch / stride)``).

    End steps are ``stride`` apart, so any run of ``S`` consecutive steps holds at most
    ``ceil(S / stride)`` of them. Sizes the per-epoch output slots of the jitted epoch.
    """
    _check_positive(stride=stride)
    return (n_steps_epoch - 1) // stride + 1
