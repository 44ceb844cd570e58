"""The states a time integrator keeps: the last few (for the scheme and the predictor) and the
stored ones (every ``store_every``-th step and the last), so that memory is bounded by what is
stored, not by the number of steps."""

from __future__ import annotations

import numpy as np

from .errors import InputError

#: states kept at least: the one being computed and three previous ones (the multistep
#: history and a quadratic predictor of :mod:`fom.sparse_newton`)
RING = 4


def stored_steps(n_steps: int, store_every: int) -> np.ndarray:
    """Steps whose states are stored: ``0, k, 2k, ...`` and the last step ``n_steps``."""
    if isinstance(store_every, bool) or not isinstance(store_every, int | np.integer) \
            or store_every < 1:
        raise InputError(f"store_every must be a positive integer, got {store_every!r}")
    steps = np.arange(0, n_steps + 1, int(store_every))
    if steps[-1] != n_steps:
        steps = np.append(steps, n_steps)
    return steps


class TrajectoryStore:
    """Ring buffer of the last :data:`RING` states plus the stored states and their Newton
    statistics.

    The integrator computes step ``n`` in place in :meth:`current` (from the states returned
    by :meth:`previous`) and then calls :meth:`commit`.
    """

    def __init__(self, x0: np.ndarray, n_steps: int, store_every: int = 1,
                 history: int = RING - 1) -> None:
        self.n_steps = n_steps
        self.steps = stored_steps(n_steps, store_every)
        self.slot = np.full(n_steps + 1, -1, dtype=np.int64)
        self.slot[self.steps] = np.arange(self.steps.size)
        n = x0.shape[0]
        self.states = np.empty((self.steps.size, n))
        self.iterations = np.zeros(self.steps.size, dtype=np.int64)
        self.residuals = np.zeros(self.steps.size)
        #: the last ``history`` states and the one being computed
        self.ring_size = max(RING, int(history) + 1)
        self.ring = np.empty((self.ring_size, n))
        self.ring[0] = x0
        self.states[0] = x0
        self.last_iterations, self.last_residual = 0, 0.0

    def previous(self, n: int, j: int) -> np.ndarray:
        """``x^{n-j}`` (``1 <= j < ring_size``, ``n - j >= 0``)."""
        return self.ring[(n - j) % self.ring_size]

    def current(self, n: int) -> np.ndarray:
        """The buffer that receives ``x^n``."""
        return self.ring[n % self.ring_size]

    def commit(self, n: int, iterations: int, residual: float) -> None:
        """Record step ``n`` (its state is in :meth:`current`)."""
        self.last_iterations, self.last_residual = int(iterations), float(residual)
        s = self.slot[n]
        if s >= 0:
            self.states[s] = self.ring[n % self.ring_size]
            self.iterations[s] = iterations
            self.residuals[s] = residual

    def fill(self, states: np.ndarray, iterations: np.ndarray, residuals: np.ndarray,
             failed: int) -> None:
        """Take the stored steps from whole-trajectory arrays (a compiled integrator's)."""
        upto = failed if failed else self.n_steps + 1
        keep = self.steps[self.steps < upto]
        self.states[:keep.size] = states[keep]
        self.iterations[:keep.size] = iterations[keep]
        self.residuals[:keep.size] = residuals[keep]
        last = failed if failed else self.n_steps
        self.last_iterations, self.last_residual = int(iterations[last]), float(residuals[last])

    def upto(self, failed: int) -> int:
        """Number of stored states before step ``failed`` (all of them if 0)."""
        return self.steps.size if not failed else int(np.searchsorted(self.steps, failed))
