"""Window arithmetic (jaxprune.windows) against a brute-force enumeration of windows, and the old
names in jaxprune.train / jaxprune.lyapunov are the same arithmetic."""

import itertools
import math

import numpy as np
import pytest

from jaxprune import lyapunov, train, windows

# (n_steps, window, stride) over small sizes: n < window, n == window, stride < / == / > window,
# stride 1, window 1 (every step its own window)
GRID = list(itertools.product(range(0, 40), (1, 2, 3, 7, 8, 12), (1, 2, 5, 7, 8, 13)))


def _brute_windows(n, window, stride):
    """Every complete window of w[0..n-1] as (first, last + 1) index pairs, by scanning starts."""
    return [(a, a + window) for a in range(0, n, stride) if a + window <= n]


@pytest.mark.parametrize("fn", [windows.n_windows, train.window_count, lyapunov.n_windows])
def test_window_count_is_the_number_of_complete_windows(fn):
    for n, window, stride in GRID:
        assert fn(n, window, stride) == len(_brute_windows(n, window, stride)), (n, window, stride)


@pytest.mark.parametrize("fn", [windows.window_end_steps, train.window_end_steps, lyapunov.window_end_steps])
def test_end_step_is_the_step_that_wrote_the_window_s_last_entry(fn):
    for n, window, stride in GRID:
        # w[i] is written by step i + 1, so window [a, b) ends at step b
        want = [b for _, b in _brute_windows(n, window, stride)]
        got = fn(windows.n_windows(n, window, stride), window, stride)
        assert got.dtype == np.int64 and got.shape == (len(want),)
        np.testing.assert_array_equal(got, want)


def test_end_steps_offset_and_the_paper_s_formula():
    np.testing.assert_array_equal(windows.window_end_steps(4), [int(50 * 0.9 * (k + 1) + 5) for k in range(4)])
    # the paper's hard-coded + 5 for its window 200 / stride 180 scripts
    np.testing.assert_array_equal(windows.window_end_steps(3, 200, 180, offset=5), [185, 365, 545])
    assert windows.window_end_steps(0, 8, 5).shape == (0,)


def test_docstring_example():
    assert windows.n_windows(100, 50, 45) == 2
    np.testing.assert_array_equal(windows.window_end_steps(2, 50, 45), [50, 95])
    assert windows.n_windows(49, 50, 45) == 0


def test_max_windows_per_epoch_bounds_every_epoch_of_a_run():
    for steps_epoch, window, stride in itertools.product(range(1, 25), (1, 2, 5, 8, 12), (1, 2, 5, 7, 8, 13)):
        ends = set(windows.window_end_steps(windows.n_windows(30 * steps_epoch, window, stride), window, stride))
        # windows ending inside each epoch (steps e*S + 1 .. (e+1)*S) of a 30-epoch run
        per_epoch = [sum(e * steps_epoch < s <= (e + 1) * steps_epoch for s in ends) for e in range(30)]
        bound = windows.max_windows_per_epoch(steps_epoch, stride)
        assert max(per_epoch) <= bound == math.ceil(steps_epoch / stride)
    # and it is reached: 10 steps per epoch, stride 3 -> ends 8, 11, 14, 17, 20 (4 in epoch 2)
    assert windows.max_windows_per_epoch(10, 3) == 4


def test_steps_per_epoch_counts_the_partial_last_batch():
    for n, b in itertools.product(range(0, 70), (1, 2, 7, 32, 128)):
        assert windows.steps_per_epoch(n, b) == len(range(0, n, b)) == train.steps_per_epoch(n, b)


def test_old_names_are_the_same_functions():
    assert train.window_count is windows.n_windows
    assert train.window_end_steps is windows.window_end_steps
    assert train.steps_per_epoch is windows.steps_per_epoch
    assert train.max_windows_per_epoch is windows.max_windows_per_epoch
    # lyapunov's keep their old argument names (T, n) and delegate
    assert lyapunov.n_windows(T=100, window=50, stride=45) == 2
    np.testing.assert_array_equal(lyapunov.window_end_steps(n=2, window=50, stride=45, offset=5), [50, 95])
    # train's old keyword names
    assert train.window_count(n_steps=100, window=50, stride=45) == 2
    np.testing.assert_array_equal(train.window_end_steps(n_windows=2, window=50, stride=45), [50, 95])


@pytest.mark.parametrize(
    "call",
    [
        lambda: windows.n_windows(10, 0, 1),
        lambda: windows.n_windows(10, 5, 0),
        lambda: windows.steps_per_epoch(10, 0),
        lambda: windows.max_windows_per_epoch(10, 0),
    ],
)
def test_bad_sizes_are_one_line_errors(call):
    with pytest.raises(ValueError, match=r"must be >= 1, got") as err:
        call()
    assert "\n" not in str(err.value)
