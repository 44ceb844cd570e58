"""The time-discrete residual of the reconstructed training trajectories (a training loss term).

Manifold LSPG (Lee & Carlberg 2019, section 3.3) picks, at every step, the manifold point that
minimizes the FOM's time-discrete residual

    r^n(x) = alpha_0 x + sum_{j=1..k} alpha_j x^{n-j} - beta dt f(x, t^n; mu)          (1)

(``fom/steppers.py``), with the *ROM's* previous states in the history. The FOM trajectory
satisfies ``r^n(x^n) = 0``. Its reconstruction ``x~^n = x^n + e^n`` (``e^n`` the autoencoder's
error) does not, and to first order in the errors

    r^n(x~^n; x~^{n-1}, ..) = (dr^n/dx)(x^n) e^n + sum_{j=1..k} alpha_j e^{n-j}          (2)

with ``dr^n/dx = alpha_0 I - beta dt df/dx`` (equation (2) of ``fom/steppers.py``). A small
reconstruction error is not enough for LSPG: an error that changes from one snapshot to the
next, or is rough in space where ``df/dx`` is large (at a shock), leaves a residual (2) of
the size of the error itself, and LSPG then trades state error for residual, which on 1D
Burgers showed up as a shock that lags the FOM's. ``[training] residual_weight = w > 0`` adds
``w`` times the mean square of (2) over the training trajectories to the loss, so that the
trained manifold keeps the FOM trajectory close to a zero of the residual LSPG minimizes.

This module builds the linear operators of (2) from the snapshot file's problem, scheme and
states (numpy/scipy only); ``autoencoder/train.py`` applies them to the errors inside the
TensorFlow loss. The errors there are those of the scaled images: the state rows are gathered
from the image (``pix``; the padding of a padded image has no residual) and, with one scaling
per channel (field), row ``i`` of (2) is measured in the scaled units of its own field,

    (1 / rng_i) [ sum_j (dr^n/dx)_ij rng_j e~_j + sum_j alpha_j rng_i e~_i^{n-j} ]           (3)

for the scaled errors ``e~ = e / rng`` (``rng_i``: the scaling range of row ``i``'s field), so
the operator's values are ``(dr^n/dx)_ij rng_j / rng_i``; with one field this is (2) in scaled
units.

Gauss-Newton acts only on the part of the residual in the span of ``Psi = (dr^n/dx) dg/dz``
at the step's code ``z^n = h(x^n)``: its correction ``dz = (Psi^T Psi)^-1 Psi^T r`` moves the
ROM state by ``Psi dz``, and the rest of ``r`` does not move it. With ``[training]
residual_projection = "tangent"`` the term is the mean square of that part,

    P r = Psi (Psi^T Psi)^-1 Psi^T r,                                                    (4)

the state-space size of the step LSPG would take away from the encoded trajectory if started
on it (a bias of this step along the trajectory is a ROM that runs ahead of or behind the FOM;
on 2D Burgers that, not the distance to the manifold, is most of Deep LSPG's error).

The size of (4) for a given bias scales with the size of a step: a ROM that runs ``d`` steps
ahead leaves ``P r ~ d (x^n - x^{n-1})``. On parameterized problems whose speed and amplitude
grow with a parameter (2D Burgers: the step's increment grows about as ``mu^2``), the mean
square over all trajectories therefore weighs a bias on the slow trajectories less than the
same bias on the fast ones, and the trained manifold lets the ROM run ahead on the slow ones.
``[training] residual_normalization = "trajectory"`` divides each step's residual by the root
mean square increment of its trajectory, relative to the mean over trajectories,

    c_i = ( mean_j s_j / s_i )^(1/2),    s_i = mean_n ||x_i^n - x_i^{n-1}||^2,            (5)

so that the term measures the bias in units of the trajectory's own step (with one
trajectory, or trajectories that move alike, ``c = 1``). ``residual_normalization = "step"``
goes one further and divides by each step's own increment,

    c^n_i = ( mean_{j,m} d_j^m / max(d_i^n, mean_{j,m} d_j^m / 100) )^(1/2),
    d_i^n = ||x_i^n - x_i^{n-1}||^2,                                                    (6)

so that the term is the mean square of the relative speed error of every step: a slow late
step weighs as much as a fast early one (a ROM's lead accumulates on both alike). A step at
rest (increment below 1/100 of the mean: ``MAX_STEP_WEIGHT``) weighs 100 times the mean
step instead of infinitely more. (2) and (4) are linear in the operator values and the
coefficients ``alpha``: scaling both by ``c`` scales the residual and its tangent part by
``c`` (:func:`residual_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fom.errors import InputError
from fom.snapshots import SnapshotSet
from fom.steppers import get_scheme, scheme_at_step, time_jacobian

from .data import Restriction, Scaling

#: The largest weight ``c^2`` of a step under ``residual_normalization = "step"`` (6): a step
#: at rest weighs this many times the mean step.
MAX_STEP_WEIGHT = 100.0

#: Refuse to hold more operator values than this in memory (float32 bytes).
MAX_OPERATOR_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class TrajectoryResidual:
    """The linearized residuals (2) of every training step ``n >= 1`` of every trajectory.

    Sample indices refer to the images array of :func:`autoencoder.data.prepare`, trajectory
    after trajectory (``index = i * n_t + n``). Row and column indices are state rows; ``pix``
    gathers the state rows from a flattened image (``image.ravel()[pix] = x``).

    Attributes
    ----------
    current : ndarray of int64, shape (m,)
        Sample index of ``x^n``.
    history : ndarray of int64, shape (m, k)
        Sample indices of ``x^{n-1}, .., x^{n-k}`` (the current index where a step uses
        fewer, with a zero coefficient).
    alpha : ndarray of float32, shape (m, k)
        The coefficients ``alpha_1..alpha_k`` of (1) at that step.
    rows, cols : ndarray of int32, shape (nnz,)
        The common sparsity pattern of ``dr^n/dx`` (state rows and columns).
    values : ndarray of float32, shape (m, nnz)
        The entries of ``dr^n/dx`` at ``x^n`` on that pattern, times ``rng_j / rng_i`` (3).
    pix : ndarray of int32, shape (N,)
        Image entry of each state row.
    """

    current: np.ndarray
    history: np.ndarray
    alpha: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    pix: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.current.size)


def trajectory_residual(snap: SnapshotSet, restriction: Restriction,
                        scaling: Scaling | None = None) -> TrajectoryResidual:
    """Operators of the linearized residual (2), per field scaled as in (3) (with
    ``scaling``; else unscaled), for every step ``n >= 1`` of ``snap``.

    The scheme and time step are the ones the snapshot file records (``/solver``); multistep
    schemes start with backward Euler as the FOM did (:func:`fom.steppers.scheme_at_step`).

    Raises
    ------
    InputError
        If the file records no scheme or time step or does not store every step, the
        problem's Jacobian changes its sparsity pattern along the trajectories, or the
        operators would not fit in memory.
    """
    where = f"{snap.path}"
    try:
        scheme = get_scheme(snap.solver["scheme"])
        dt = float(snap.solver["dt"])
    except KeyError as exc:
        raise InputError(f"{where}: /solver records no {exc.args[0]!r}; residual_weight needs "
                         "the scheme and time step that produced the snapshots") from None
    if snap.solver.get("store_every", 1) != 1:
        raise InputError(f"{where}: residual_weight needs every time step, but the file stores "
                         f"every {snap.solver['store_every']}-th (store_every)")
    problem = snap.problem()
    n_mu, n_t, n = snap.states.shape
    m = n_mu * (n_t - 1)
    k = scheme.n_history
    if restriction.n_dofs != n:
        raise InputError(f"{where}: states have N = {n} entries, the restriction "
                         f"{restriction.n_dofs}")

    # the common pattern: the first step's Jacobian (checked against every other step)
    first = time_jacobian(problem, scheme_at_step(scheme, 1), snap.states[0, 1], snap.t[1],
                          dt, snap.mu[0]).tocoo()
    keys = np.unique(first.row.astype(np.int64) * n + first.col)
    need = m * keys.size * 4
    if need > MAX_OPERATOR_BYTES:
        raise InputError(f"{where}: residual_weight needs {need / 1024**3:.1f} GiB of operator "
                         f"values ({m} steps x {keys.size} Jacobian entries); use fewer "
                         "training snapshots or residual_weight = 0")
    values = np.zeros((m, keys.size), dtype=np.float32)
    current = np.empty(m, dtype=np.int64)
    history = np.empty((m, k), dtype=np.int64)
    alpha = np.zeros((m, k), dtype=np.float32)
    s = 0
    for i in range(n_mu):
        for step in range(1, n_t):
            sch = scheme_at_step(scheme, step)
            jac = time_jacobian(problem, sch, snap.states[i, step], snap.t[step], dt,
                                snap.mu[i]).tocoo()
            key = jac.row.astype(np.int64) * n + jac.col
            pos = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            if not np.array_equal(keys[pos], key):
                raise InputError(f"{where}: the Jacobian of problem {snap.problem_name} at "
                                 f"trajectory {i}, step {step} has entries outside the "
                                 "pattern of the first step; residual_weight needs a fixed "
                                 "sparsity pattern")
            np.add.at(values[s], pos, jac.data)
            current[s] = i * n_t + step
            hist = [i * n_t + step - j for j in range(1, sch.n_history + 1)]
            history[s] = hist + [current[s]] * (k - len(hist))
            alpha[s, :sch.n_history] = sch.alpha[1:]
            s += 1
    rows, cols = np.divmod(keys, n)
    if scaling is not None:  # (3): row i in its field's scaled units, column j's scaling
        rng = scaling.rows(restriction)[1]
        values *= (rng[cols] / rng[rows]).astype(np.float32)
    return TrajectoryResidual(current=current, history=history, alpha=alpha,
                              rows=rows.astype(np.int32), cols=cols.astype(np.int32),
                              values=values, pix=restriction.pix.astype(np.int32))


def residual_scale(res: TrajectoryResidual, images: np.ndarray, n_t: int,
                   by: str) -> np.ndarray:
    """The factors ``c`` of (5) (``by = "trajectory"``) or (6) (``by = "step"``), one per step
    of ``res``, float32, shape (m,).

    ``images`` are the (scaled) training images the residual's sample indices refer to
    (trajectory after trajectory, ``n_t`` each); the increments are measured on the state
    rows (``res.pix``), so an image's padding does not count. A step whose increment is below
    ``1 / MAX_STEP_WEIGHT`` of the mean (a state at rest, as 1D Burgers' once its shock has
    left) weighs ``MAX_STEP_WEIGHT`` times the mean step, not infinitely more.

    Raises
    ------
    InputError
        If a trajectory does not move (``"trajectory"``), or no step does (``"step"``).
    """
    flat = images.reshape(images.shape[0], -1)
    prev = res.history[:, 0]
    inc = np.empty(res.current.size)
    for s in range(0, inc.size, 1024):  # in blocks: two (block, N) arrays at a time
        cur, hist = res.current[s:s + 1024], prev[s:s + 1024]
        diff = flat[cur][:, res.pix].astype(np.float64) - flat[hist][:, res.pix]
        inc[s:s + 1024] = np.mean(diff * diff, axis=1)
    if by == "step":
        mean = np.mean(inc)
        if not mean > 0:
            raise InputError("residual_normalization = 'step': no training step moves (every "
                             "increment is zero), so the residual has no scale")
        return np.sqrt(mean / np.maximum(inc, mean / MAX_STEP_WEIGHT)).astype(np.float32)
    traj = res.current // n_t
    ids, inverse = np.unique(traj, return_inverse=True)
    size = np.bincount(inverse, weights=inc) / np.bincount(inverse)
    if np.any(size <= 0):
        raise InputError(f"residual_normalization = 'trajectory': trajectory "
                         f"{int(ids[np.argmin(size)])} does not move (every increment is "
                         "zero), so its residual has no scale")
    return np.sqrt(np.mean(size) / size)[inverse].astype(np.float32)
