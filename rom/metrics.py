"""Error measures (docs/method.md, section 8; Lee & Carlberg 2020, section 6).

The relative state error over a whole trajectory,

    e = sqrt( sum_n ||x^n - x~^n||^2 ) / sqrt( sum_n ||x^n||^2 ),

with ``x^n`` the FOM states and ``x~^n`` the ROM's, and the projection error of the trial
manifold: the same measure with ``x~^n`` replaced by the manifold's approximation of ``x^n``
(orthogonal projection for POD; for a decoder, ``decode(encode(.))`` or a per-snapshot
least-squares fit, see :meth:`rom.manifolds.DecoderManifold.project`).

For problems with several fields (the state is field-major, ``x = [x_0, x_1, ...]``, each
field a block of ``N / n_fields`` entries; docs/CONTRACTS.md), :func:`field_errors` gives the
same trajectory error per field ``c`` (the measure of the NM-ROM study, Kim et al. 2022),

    e_c = sqrt( sum_n ||x_c^n - x~_c^n||^2 ) / sqrt( sum_n ||x_c^n||^2 ),

and the largest per-step relative error ``max_n ||x_c^n - x~_c^n|| / ||x_c^n||`` over the
steps whose reference field is not zero (docs/method.md, section 8).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fom.errors import InputError


def _pair(ref_states: Any, rom_states: Any) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref_states, dtype=np.float64)
    rom = np.asarray(rom_states, dtype=np.float64)
    if ref.shape != rom.shape:
        raise InputError(f"reference states have shape {ref.shape} but ROM states {rom.shape}")
    if ref.size == 0:
        raise InputError("no states to compare")
    if not np.all(np.isfinite(ref)):
        raise InputError("reference states contain NaN or Inf values")
    return ref, rom


def relative_error(ref_states: Any, rom_states: Any) -> float:
    """The paper's relative state error over the trajectory (any matching shapes).

    Returns ``inf`` if the ROM states are not finite, and the absolute error if the
    reference is identically zero.
    """
    ref, rom = _pair(ref_states, rom_states)
    if not np.all(np.isfinite(rom)):
        return float("inf")
    num = float(np.linalg.norm((ref - rom).ravel()))
    den = float(np.linalg.norm(ref.ravel()))
    return num / den if den > 0 else num


def relative_error_in_time(ref_states: Any, rom_states: Any) -> np.ndarray:
    """``||x^n - x~^n|| / ||x^n||`` per time step, for states of shape (n_t, N)."""
    ref, rom = _pair(ref_states, rom_states)
    if ref.ndim != 2:
        raise InputError(f"expected states of shape (n_t, N), got {ref.shape}")
    den = np.linalg.norm(ref, axis=1)
    return np.linalg.norm(ref - rom, axis=1) / np.where(den > 0, den, 1.0)


def projection_error(manifold: Any, ref_states: Any, x_ref: Any | None = None) -> float:
    """Relative error of the manifold's best approximation of a FOM trajectory.

    Parameters
    ----------
    manifold : AffineManifold or DecoderManifold
    ref_states : ndarray, shape (n_t, N)
        FOM states of one trajectory, ``ref_states[0] = x0(mu)``.
    x_ref : ndarray, shape (N,), optional
        The reference state; by default ``manifold.initial_condition(ref_states[0])``, the one
        the ROM uses.
    """
    ref = np.asarray(ref_states, dtype=np.float64)
    if ref.ndim != 2 or ref.shape[1] != manifold.n_dofs:
        raise InputError(f"expected FOM states of shape (n_t, {manifold.n_dofs}), got "
                         f"{ref.shape}")
    if x_ref is None:
        x_ref = manifold.initial_condition(ref[0])[0]
    return relative_error(ref, manifold.project(ref, np.asarray(x_ref, dtype=np.float64)))


def field_errors(ref_states: Any, rom_states: Any,
                 n_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-field relative trajectory error and largest per-step relative error.

    Parameters
    ----------
    ref_states, rom_states : array_like, shape (n_t, N)
        FOM and ROM states of one trajectory in the field-major layout of the problem's
        ``fields``: entries ``[c * N / n_fields, (c + 1) * N / n_fields)`` are field ``c``.
    n_fields : int
        Number of fields; must divide ``N``.

    Returns
    -------
    trajectory : ndarray, shape (n_fields,)
        ``sqrt(sum_n ||e_c^n||^2) / sqrt(sum_n ||x_c^n||^2)`` (docs/method.md, section 8);
        the absolute error if field ``c`` of the reference is zero at every step.
    max_step : ndarray, shape (n_fields,)
        ``max_n ||e_c^n|| / ||x_c^n||`` over the steps ``n`` with ``x_c^n != 0`` (a step
        whose reference field is zero has no relative error and is left out); the largest
        absolute error if there is no such step.

    Both are ``inf`` for a field whose ROM states are not finite. With ``n_fields = 1`` the
    trajectory error is :func:`relative_error` (to round-off) and ``max_step`` the maximum of
    :func:`relative_error_in_time`.
    """
    ref, rom = _pair(ref_states, rom_states)
    if ref.ndim != 2:
        raise InputError(f"expected states of shape (n_t, N), got {ref.shape}")
    if isinstance(n_fields, bool) or not isinstance(n_fields, int | np.integer) \
            or n_fields < 1 or ref.shape[1] % n_fields:
        raise InputError(f"n_fields = {n_fields!r} does not divide the state size "
                         f"N = {ref.shape[1]}")
    shape = (ref.shape[0], int(n_fields), ref.shape[1] // int(n_fields))
    x = ref.reshape(shape)
    with np.errstate(invalid="ignore", over="ignore"):
        e = x - rom.reshape(shape)
        err2 = np.einsum("tcj,tcj->tc", e, e)        # ||e_c^n||^2, (n_t, n_fields)
    ref2 = np.einsum("tcj,tcj->tc", x, x)            # ||x_c^n||^2
    total_err, total_ref = np.sqrt(err2.sum(axis=0)), np.sqrt(ref2.sum(axis=0))
    trajectory = np.where(total_ref > 0, total_err / np.where(total_ref > 0, total_ref, 1.0),
                          total_err)
    nonzero = ref2 > 0
    step = np.sqrt(err2) / np.sqrt(np.where(nonzero, ref2, 1.0))
    max_step = np.where(nonzero.any(axis=0),
                        np.max(np.where(nonzero, step, -np.inf), axis=0),
                        np.sqrt(err2).max(axis=0))
    bad = ~np.all(np.isfinite(rom.reshape(shape)), axis=(0, 2))
    trajectory[bad] = np.inf
    max_step[bad] = np.inf
    return trajectory, max_step
