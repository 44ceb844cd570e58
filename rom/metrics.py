"""Error measures (docs/method.md, section 8; Lee & Carlberg 2020, section 6).

The relative state error over a whole trajectory,

    e = sqrt( sum_n ||x^n - x~^n||^2 ) / sqrt( sum_n ||x^n||^2 ),

with ``x^n`` the FOM states and ``x~^n`` the ROM's, and the projection error of the trial
manifold: the same measure with ``x~^n`` replaced by the manifold's approximation of ``x^n``
(orthogonal projection for POD; for a decoder, ``decode(encode(.))`` or a per-snapshot
least-squares fit, see :meth:`rom.manifolds.DecoderManifold.project`).
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
