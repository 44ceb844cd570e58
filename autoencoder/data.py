"""Data pipeline: restriction/prolongation, scaling to [0, 1], training targets, splits.

The restriction operator (Lee & Carlberg 2019, section 4.1 and section 6.1) maps a state
vector ``x`` in ``R^N`` to the image the convolutional autoencoder sees, and the prolongation
maps an image back to a state. A state holds ``C`` fields (``problem.fields``), field after
field, each on the problem's grid; the image has one channel per field:

* for the 1D Burgers problem the 256 cell values are reshaped row-major into the problem's
  ``image_shape`` ``16 x 16 x 1`` (or ``256 x 1`` for 1D convolutions);
* for a 2D problem the grid ``(ny, nx)`` of each field becomes one channel of an
  ``ny x nx x C`` image (row ``j``, column ``i``: entry ``c * ny * nx + j * nx + i``);
* ``[autoencoder] image_size = [H, W]`` places that grid in a larger image, centred (the
  smaller half of the padding before the grid), so that the strides of a CNN divide the image
  (2D Burgers: 58 x 58 -> 64 x 64). The padded pixels hold a fixed value per channel: for the
  deviation target 0 ("no change"), for the raw target the problem's ``boundary_values`` if it
  declares them (2D Burgers: 0, its Dirichlet value), else 0.

The restriction is described by ``pix`` (the flat image index of each state entry, so
``image.ravel()[pix] = x``), the image shape and the pad values.

Scaling (section 6.1): the training targets are mapped to [0, 1] per channel, ``s = (d -
lo_c) / (hi_c - lo_c)``, with the training data's minimum and maximum of each field (and the pad
value, when the image is padded): fields that differ by orders of magnitude (a temperature of
1e3 K and mass fractions of 1e-2) each use the whole interval. By default the targets are the
deviations ``x^n(mu) - x0(mu)`` from each trajectory's initial state (section 5.3).

This module imports numpy only (never TensorFlow), so the online path can use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fom.errors import InputError

#: Snapshots restricted (and scaled) per block by :func:`prepare` (bounds the float64 copies).
_CHUNK = 1024


def _base_pix(n_cells: int, n_vars: int, layout: str) -> np.ndarray:
    """Flat index in the unpadded ``(..., n_vars)`` image of each state entry."""
    if layout == "blocked":  # x[c * n_cells + k] -> image[k, c]
        return (np.arange(n_cells)[None, :] * n_vars + np.arange(n_vars)[:, None]).ravel()
    if layout == "interleaved":  # x[k * n_vars + c] -> image[k, c]
        return np.arange(n_cells * n_vars)
    raise InputError(f"unknown state layout {layout!r}")


@dataclass(frozen=True)
class Restriction:
    """State vector <-> autoencoder image (the paper's restriction operator and its inverse).

    Attributes
    ----------
    image_shape : tuple of int
        ``(H, W, C)`` for 2D convolutions or ``(L, C)`` for 1D ones.
    pix : ndarray of int64, shape (N,)
        Flat image index of each state entry: ``image.ravel()[pix] = x`` (distinct entries).
    pad : ndarray of float64, shape (C,)
        Value of the image entries that no state entry fills (the padding), per channel, in
        the units of the training target (unscaled). Irrelevant without padding.
    """

    image_shape: tuple[int, ...]
    pix: np.ndarray
    pad: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        pix = np.ascontiguousarray(self.pix, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "pix", pix)
        c = shape[-1]
        pad = np.zeros(c) if self.pad is None else np.asarray(self.pad, dtype=np.float64)
        object.__setattr__(self, "pad", pad.reshape(-1))
        m = math.prod(shape)
        if pad.size != c or not np.all(np.isfinite(pad)):
            raise InputError(f"pad values {pad.tolist()} must be {c} finite numbers (one per "
                             f"channel)")
        if pix.size > m or (pix.size and (pix.min() < 0 or pix.max() >= m)) \
                or np.unique(pix).size != pix.size:
            raise InputError(f"the restriction's pixel indices must be distinct entries of "
                             f"[0, {m}) (image {list(shape)})")

    @property
    def n_dofs(self) -> int:
        """State dimension ``N``."""
        return int(self.pix.size)

    @property
    def n_pixels(self) -> int:
        """Entries of one image, ``H * W * C`` (``N`` plus the padding)."""
        return math.prod(self.image_shape)

    @property
    def n_channels(self) -> int:
        return self.image_shape[-1]

    @property
    def channel(self) -> np.ndarray:
        """Channel (field) of each state entry, shape (N,)."""
        return self.pix % self.n_channels

    @property
    def padded(self) -> bool:
        """Whether the image has entries that no state entry fills."""
        return self.n_pixels > self.n_dofs

    def pad_image(self) -> np.ndarray:
        """A flat image (``H * W * C``,) holding the pad value of each channel everywhere."""
        return np.tile(self.pad, self.n_pixels // self.n_channels)

    @classmethod
    def from_image_shape(cls, problem_shape: tuple[int, ...], dims: int,
                         layout: str = "blocked", image_size: Sequence[int] | None = None,
                         pad: Any = None) -> Restriction:
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
        image_size : sequence of int, optional
            Spatial size of the image (``[H, W]`` for ``dims = 2``, ``[L]`` for ``dims =
            1``), at least the problem's; the problem's image is centred in it.
        pad : sequence of float, optional
            Pad value per channel (default 0).
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
        elif dims == 1:
            spatial = (math.prod(spatial),)
        else:
            raise InputError(f"dims must be 1 or 2, got {dims!r}")
        pix = _base_pix(math.prod(spatial), n_vars, layout)
        size = spatial if not image_size else tuple(int(s) for s in image_size)
        if len(size) != len(spatial) or any(s < b for s, b in zip(size, spatial, strict=True)):
            grid = " x ".join(str(s) for s in spatial)
            raise InputError(f"image_size {list(size)} must have {len(spatial)} entr"
                             f"{'y' if len(spatial) == 1 else 'ies'}, each at least the "
                             f"problem's image ({grid})")
        if size != spatial:  # centre the grid: the smaller half of the padding first
            site, ch = np.divmod(pix, n_vars)
            coords = np.unravel_index(site, spatial)
            moved = tuple(c + (s - b) // 2 for c, s, b in zip(coords, size, spatial,
                                                              strict=True))
            pix = np.ravel_multi_index(moved, size) * n_vars + ch
        return cls((*size, n_vars), pix.astype(np.int64), pad)

    @classmethod
    def for_problem(cls, problem: Any, dims: int, image_size: Sequence[int] | None = None,
                    target: str = "deviation") -> Restriction:
        """The restriction of a :class:`fom.Problem` (its ``image_shape``), with the pad values
        of ``target``: 0 for ``"deviation"``, the problem's ``boundary_values`` (else 0) for
        ``"raw"``."""
        n_vars = int(problem.image_shape[-1])
        pad = None
        if target == "raw" and getattr(problem, "boundary_values", None) is not None:
            pad = np.asarray(problem.boundary_values, dtype=np.float64)
        return cls.from_image_shape(problem.image_shape, dims,
                                    getattr(problem, "state_layout", "blocked"), image_size,
                                    np.zeros(n_vars) if pad is None else pad)

    def restrict(self, x: np.ndarray) -> np.ndarray:
        """States ``(..., N)`` -> images ``(..., *image_shape)`` (float64 unless ``x`` is
        float32); padded entries hold :attr:`pad`."""
        x = np.asarray(x)
        if x.shape[-1] != self.n_dofs:
            raise InputError(f"state vectors have {x.shape[-1]} entries, the restriction "
                             f"expects {self.n_dofs}")
        lead = x.shape[:-1]
        dtype = np.float32 if x.dtype == np.float32 else np.float64
        out = np.empty((*lead, self.n_pixels), dtype=dtype)
        out[...] = self.pad_image()
        out[..., self.pix] = x
        return out.reshape(*lead, *self.image_shape)

    def prolong(self, img: np.ndarray) -> np.ndarray:
        """Images ``(..., *image_shape)`` -> states ``(..., N)`` (the padding is dropped)."""
        img = np.asarray(img)
        lead = img.shape[: img.ndim - len(self.image_shape)]
        return img.reshape(*lead, self.n_pixels)[..., self.pix]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """What a model file stores: ``pix``, ``pad`` (and the image shape as an attribute)."""
        return {"pix": self.pix, "pad": self.pad}


@dataclass(frozen=True)
class Scaling:
    """Affine map of the training targets to [0, 1] per channel: ``s = (d - lo_c) / (hi_c -
    lo_c)`` on channel ``c`` (``lo``, ``hi``: arrays of the channels' bounds)."""

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        lo = np.atleast_1d(np.asarray(self.lo, dtype=np.float64)).reshape(-1)
        hi = np.atleast_1d(np.asarray(self.hi, dtype=np.float64)).reshape(-1)
        if lo.shape != hi.shape:
            raise InputError(f"scaling bounds lo {lo.tolist()} and hi {hi.tolist()} differ in "
                             "length")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
            raise InputError(f"invalid scaling lo {lo.tolist()}, hi {hi.tolist()} (finite, "
                             "hi > lo)")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @classmethod
    def fit(cls, data: np.ndarray, restriction: Restriction, mode: str = "minmax") -> Scaling:
        """Per-channel minimum and maximum of the targets ``data`` (..., N) (and of the pad
        value when the image is padded); a constant channel gets the range 1.

        ``mode = "maxabs"`` instead divides each channel by its largest magnitude (``lo = 0``,
        ``hi = max |d|``): the images lie in [-1, 1] and a zero target stays zero (the
        deviation target's initial state and quiet regions), where ``"minmax"`` maps it to a
        channel-dependent grey."""
        if mode not in ("minmax", "maxabs"):
            raise InputError(f"scaling mode must be 'minmax' or 'maxabs', got {mode!r}")
        data = np.asarray(data)
        if data.shape[-1] != restriction.n_dofs:
            raise InputError(f"targets have {data.shape[-1]} entries per state, the "
                             f"restriction expects {restriction.n_dofs}")
        flat = data.reshape(-1, data.shape[-1])
        if flat.shape[0] == 0:
            raise InputError("no training data to fit the scaling on")
        cmin, cmax = flat.min(axis=0), flat.max(axis=0)
        if not (np.all(np.isfinite(cmin)) and np.all(np.isfinite(cmax))):
            raise InputError("training data contain NaN or Inf values")
        ch, n_c = restriction.channel, restriction.n_channels
        lo = np.array([cmin[ch == c].min() if np.any(ch == c) else 0.0 for c in range(n_c)])
        hi = np.array([cmax[ch == c].max() if np.any(ch == c) else 0.0 for c in range(n_c)])
        if restriction.padded:
            lo, hi = np.minimum(lo, restriction.pad), np.maximum(hi, restriction.pad)
        if mode == "maxabs":
            lo, hi = np.zeros_like(lo), np.maximum(np.abs(lo), np.abs(hi))
        hi = np.where(hi - lo > 0, hi, lo + 1.0)  # constant data: any positive range works
        return cls(lo, hi)

    @classmethod
    def from_dict(cls, d: Any) -> Scaling:
        """From :meth:`to_dict`'s ``{"lo": [...], "hi": [...]}`` (or the scalars of a one-
        channel model of format version 1)."""
        return cls(d["lo"], d["hi"])

    @property
    def range(self) -> np.ndarray:
        return self.hi - self.lo

    def scale_image(self, img: np.ndarray) -> np.ndarray:
        """Scale channels-last images ``(..., C)``."""
        return (np.asarray(img) - self.lo) / self.range

    def unscale_image(self, s: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`scale_image`."""
        return self.lo + self.range * np.asarray(s)

    def rows(self, restriction: Restriction) -> tuple[np.ndarray, np.ndarray]:
        """``lo`` and ``hi - lo`` of each state entry (its channel's), shape (N,) each: the
        per-row unscaling ``g_i = lo_i + rng_i y_{pix_i}`` of the decoder kernels."""
        ch = restriction.channel
        return (np.ascontiguousarray(self.lo[ch]), np.ascontiguousarray(self.range[ch]))

    def to_dict(self) -> dict[str, list[float]]:
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist()}


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


def trajectory_neighbours(n_images: int, n_t: int,
                          step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The images ``step`` time steps before and after each image of its trajectory.

    The images hold trajectories of ``n_t`` states one after the other (image ``i * n_t + n``
    is step ``n`` of trajectory ``i``). Used by the latent-smoothness term of the training
    loss (``latent_smoothness_weight``), which compares the codes of ``x^{n-k}``, ``x^n`` and
    ``x^{n+k}``.

    Returns
    -------
    prev, next : ndarray of int64, shape (n_images,)
        Image indices of ``x^{n-step}`` and ``x^{n+step}`` (the image itself where that step
        is outside its trajectory).
    inside : ndarray of float32, shape (n_images,)
        1 where both neighbours lie inside the trajectory, else 0.
    """
    if n_t < 1 or n_images % n_t:
        raise ValueError(f"{n_images} images are not whole trajectories of {n_t} states")
    i = np.arange(n_images, dtype=np.int64)
    n = i % n_t
    has_prev, has_next = n - step >= 0, n + step < n_t
    return (np.where(has_prev, i - step, i), np.where(has_next, i + step, i),
            (has_prev & has_next).astype(np.float32))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Shuffled sample order of one epoch: a function of (seed, epoch) only, so a resumed
    training sees exactly the batches an uninterrupted one would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def prepare(states: np.ndarray, restriction: Restriction, target: str,
            scaling: Scaling | None = None) -> tuple[np.ndarray, Scaling]:
    """Scaled float32 images of all snapshots ``(n_mu * n_t, *image_shape)`` and the scaling.

    The scaling is fitted on ``states``' targets unless given. The padded entries of each
    image hold the scaled pad value of their channel.
    """
    states = np.asarray(states)
    if scaling is None:
        scaling = Scaling.fit(targets(states, target), restriction)
    if states.ndim != 3:
        raise InputError(f"states must have shape (n_mu, n_t, N), got {states.shape}")
    n_mu, n_t, _ = states.shape
    out = np.empty((n_mu * n_t, *restriction.image_shape), dtype=np.float32)
    for i in range(n_mu):
        d = targets(states[i:i + 1], target)[0]
        for k in range(0, n_t, _CHUNK):
            out[i * n_t + k:i * n_t + min(k + _CHUNK, n_t)] = scaling.scale_image(
                restriction.restrict(d[k:k + _CHUNK]))
    return out, scaling


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
