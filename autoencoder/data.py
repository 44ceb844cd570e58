"""Data pipeline: restriction/prolongation, scaling to [0, 1], training targets, splits.

The restriction operator (Lee & Carlberg 2019, section 4.1 and section 6.1) maps a state
vector ``x`` in ``R^N`` to the image the convolutional autoencoder sees: for the 1D Burgers
problem the 256 cell values are reshaped row-major into a 16 x 16 one-channel image; for a 2D
problem with ``n_vars`` variables stored one after the other (``x = [u; v]``) the image is
``ny x nx x n_vars``. The prolongation is its inverse. Both are a permutation ``perm`` with
``image.ravel() = x[perm]``.

Scaling (section 6.1): the training targets are mapped to [0, 1] by the training data's
minimum and maximum (one scalar pair, stored with the model). By default the targets are the
deviations ``x^n(mu) - x0(mu)`` from each trajectory's initial state (section 5.3).

This module imports numpy only (never TensorFlow), so the online path can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fom.errors import InputError


@dataclass(frozen=True)
class Restriction:
    """State vector <-> autoencoder image (the paper's restriction operator and its inverse).

    Attributes
    ----------
    image_shape : tuple of int
        ``(H, W, C)`` for 2D convolutions or ``(L, C)`` for 1D ones.
    perm : ndarray of int64, shape (N,)
        ``image.ravel() = x[perm]``.
    """

    image_shape: tuple[int, ...]
    perm: np.ndarray

    @property
    def n_dofs(self) -> int:
        return int(self.perm.size)

    @classmethod
    def from_image_shape(cls, problem_shape: tuple[int, ...], dims: int,
                         layout: str = "blocked") -> Restriction:
        """Restriction for a problem's declared ``image_shape`` and the conv dimension.

        Parameters
        ----------
        problem_shape : tuple of int
            The problem's ``image_shape``: ``(ny, nx, n_vars)`` or ``(n, n_vars)``.
        dims : {1, 2}
            Convolution dimension. ``dims = 1`` with a 2D problem shape flattens the spatial
            axes (row-major); ``dims = 2`` needs a 3-entry problem shape.
        layout : {"blocked", "interleaved"}
            How several variables are stored in the state: one after the other (default) or
            interleaved per cell. Irrelevant for one variable.
        """
        shape = tuple(int(s) for s in problem_shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise InputError(f"image shape {list(shape)} must be (n, n_vars) or "
                             f"(ny, nx, n_vars)")
        n_vars = shape[-1]
        spatial = shape[:-1]
        if dims == 2:
            if len(spatial) != 2:
                raise InputError(f"dims = 2 needs a 2D image shape (ny, nx, n_vars); the "
                                 f"problem declares {list(shape)}")
            img = (spatial[0], spatial[1], n_vars)
        elif dims == 1:
            img = (math.prod(spatial), n_vars)
        else:
            raise InputError(f"dims must be 1 or 2, got {dims!r}")
        n = math.prod(img)
        n_cells = n // n_vars
        if layout == "blocked":
            # image[k, c] = x[c * n_cells + k]
            perm = (np.arange(n_vars)[None, :] * n_cells + np.arange(n_cells)[:, None]).ravel()
        elif layout == "interleaved":
            perm = np.arange(n)
        else:
            raise InputError(f"unknown state layout {layout!r}")
        return cls(img, perm.astype(np.int64))

    def restrict(self, x: np.ndarray) -> np.ndarray:
        """States ``(..., N)`` -> images ``(..., *image_shape)``."""
        x = np.asarray(x)
        if x.shape[-1] != self.n_dofs:
            raise InputError(f"state vectors have {x.shape[-1]} entries, the restriction "
                             f"expects {self.n_dofs}")
        return x[..., self.perm].reshape(*x.shape[:-1], *self.image_shape)

    def prolong(self, img: np.ndarray) -> np.ndarray:
        """Images ``(..., *image_shape)`` -> states ``(..., N)``."""
        img = np.asarray(img)
        lead = img.shape[: img.ndim - len(self.image_shape)]
        flat = img.reshape(*lead, self.n_dofs)
        out = np.empty_like(flat)
        out[..., self.perm] = flat
        return out


@dataclass(frozen=True)
class Scaling:
    """Affine map of the training targets to [0, 1]: ``s = (d - lo) / (hi - lo)``."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, data: np.ndarray) -> Scaling:
        lo, hi = float(np.min(data)), float(np.max(data))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError("training data contain NaN or Inf values")
        if hi - lo <= 0:
            hi = lo + 1.0  # constant data: any positive range works
        return cls(lo, hi)

    @property
    def range(self) -> float:
        return self.hi - self.lo

    def scale(self, d: np.ndarray) -> np.ndarray:
        return (np.asarray(d) - self.lo) / self.range

    def unscale(self, s: np.ndarray) -> np.ndarray:
        return self.lo + self.range * np.asarray(s)

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}


def targets(states: np.ndarray, target: str) -> np.ndarray:
    """Training targets of trajectories ``(n_mu, n_t, N)``: deviations or raw states.

    ``target = "deviation"`` returns ``x^n(mu) - x0(mu)`` (section 5.3 of the paper), so the
    zero vector is in the training set and every trajectory starts at the same latent point.
    """
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 3:
        raise InputError(f"states must have shape (n_mu, n_t, N), got {states.shape}")
    if target == "deviation":
        return states - states[:, :1, :]
    if target == "raw":
        return states
    raise InputError(f"target must be 'deviation' or 'raw', got {target!r}")


def validation_trajectories(mu: np.ndarray, every: int, params: list | np.ndarray,
                            where: str) -> np.ndarray:
    """Indices of the training file's trajectories held out whole for validation.

    Validation by trajectory: a held-out parameter's whole trajectory is unseen by the
    optimizer (a random split of snapshots would validate on the neighbours in time of
    training snapshots). ``params`` (the ``validation_params`` key) lists the held-out
    parameters explicitly; each must be a parameter of the file. Otherwise ``every = k > 0``
    (``validation_every``) holds out the trajectories ``1, 1 + k, 1 + 2k, ...`` in file order:
    on the paper's 10 x 8 Burgers grid (``mu1`` slowest) with ``k = 5`` these are 16
    parameters spread over the box along diagonals, none of them a corner of the box.
    ``every = 0`` and no ``params``: no validation (every trajectory trains).

    Parameters
    ----------
    mu : ndarray, shape (n_mu, n_params)
        The training file's parameters, in file order.
    every : int
    params : list of parameter vectors or ndarray
    where : str
        Config file and section, for error messages.

    Returns
    -------
    ndarray of int64
        Sorted trajectory indices.

    Raises
    ------
    InputError
        A listed parameter is not in the file, or the split leaves no training trajectory.
    """
    mu = np.asarray(mu, dtype=np.float64)
    n = mu.shape[0]
    wanted = np.asarray(params, dtype=np.float64)
    if wanted.size:
        if wanted.ndim != 2 or wanted.shape[1] != mu.shape[1]:
            raise InputError(f"{where} validation_params: must be a list of parameter vectors "
                             f"with {mu.shape[1]} entries each, got {np.asarray(params).tolist()}")
        scale = np.maximum(np.abs(mu).max(axis=0), 1e-300)
        idx = []
        for w in wanted:
            hit = np.flatnonzero(np.all(np.abs(mu - w) <= 1e-9 * scale, axis=1))
            if hit.size == 0:
                raise InputError(f"{where} validation_params: {w.tolist()} is not a parameter "
                                 "of the training snapshot file")
            idx.append(int(hit[0]))
        val = np.unique(np.array(idx, dtype=np.int64))
    elif every > 0:
        val = np.arange(1, n, every, dtype=np.int64)
    else:
        val = np.zeros(0, dtype=np.int64)
    if val.size >= n:
        raise InputError(f"{where}: the validation split holds out all {n} training "
                         "trajectories; none would be left to train on")
    return val


def sample_split(traj: np.ndarray, step: np.ndarray, validation: np.ndarray,
                 stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation samples from each sample's trajectory and time step.

    Training samples: the steps ``n`` with ``n % stride == 0`` of the trajectories not in
    ``validation`` (``snapshot_stride``: consecutive snapshots of a trajectory differ little,
    so every other one carries nearly the same information at half the cost). Validation
    samples: the same steps of the ``validation`` trajectories (held out whole: none of
    their steps is trained on).

    Parameters
    ----------
    traj, step : ndarray of int, shape (m,)
        Trajectory index and time step of each sample.
    validation : ndarray of int
        Held-out trajectories (:func:`validation_trajectories`).
    stride : int
        Keep every ``stride``-th step of the training trajectories.

    Returns
    -------
    i_train, i_val : ndarray of int64
        Sorted sample indices.
    """
    held, kept = np.isin(traj, validation), step % stride == 0
    return (np.flatnonzero(~held & kept).astype(np.int64),
            np.flatnonzero(held & kept).astype(np.int64))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Shuffled sample order of one epoch: a function of (seed, epoch) only, so a resumed
    training sees exactly the batches an uninterrupted one would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def prepare(states: np.ndarray, restriction: Restriction, target: str,
            scaling: Scaling | None = None) -> tuple[np.ndarray, Scaling]:
    """Scaled float32 images of all snapshots ``(n_mu * n_t, *image_shape)`` and the scaling.

    The scaling is fitted on ``states``' targets unless given.
    """
    d = targets(states, target).reshape(-1, states.shape[-1])
    scaling = scaling or Scaling.fit(d)
    return restriction.restrict(scaling.scale(d)).astype(np.float32), scaling


def hard_example_weights(errors: np.ndarray, exponent: float, max_weight: float) -> np.ndarray:
    """Per-sample loss weights that favour the samples the model fits worst.

    ``w_i = clip((m_i / mean(m))^q, 1/w_max, w_max)`` with ``m_i`` the current mean squared
    error of sample ``i``, ``q = exponent`` and ``w_max = max_weight``, then normalized to mean
    1 (float32). ``q = 0`` gives equal weights. With this weighting, a region of the manifold
    that few snapshots sample (on 1D Burgers the few steps in which the shock leaves the
    domain, against the many identical steady states after it) is fitted as well as the rest.
    """
    m = np.asarray(errors, dtype=np.float64)
    if exponent == 0 or m.size == 0:
        return np.ones(m.size, dtype=np.float32)
    w = np.clip((m / max(float(np.mean(m)), 1e-300)) ** exponent, 1.0 / max_weight, max_weight)
    return (w / np.mean(w)).astype(np.float32)
