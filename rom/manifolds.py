"""Trial manifolds ``x~ = x_ref + g(z)``: the affine POD manifold and the decoder manifold.

Both answer the same questions (Lee & Carlberg 2020, section 3.1, "kinematics"):

``p``, ``n_dofs``
    Latent and state dimension.
``decode(z) -> g``, ``decode_with_jacobian(z) -> (g, J)``, ``decode_rows(z, rows)``
    The map ``g`` and its Jacobian ``J = dg/dz`` (N x p); ``decode_rows`` returns only the
    rows ``rows`` of both (for hyper-reduction). ``g`` excludes the reference state.
``initial_condition(x0) -> (x_ref, z0)``
    A reference state and an initial latent state with ``x_ref + g(z0) = x0`` to round-off
    (the paper's Remark 3.1), so every ROM starts exactly at the FOM's initial state.
``project(states, x_ref) -> states on the manifold``
    The manifold's approximation of given FOM states, for the projection error.

:class:`AffineManifold` is POD: ``g(z) = Phi z`` with ``Phi`` the leading left singular vectors
of the training snapshots (by default their deviations ``x^n(mu) - x0(mu)`` from the initial
state, the data the autoencoder sees; docs/method.md), ``x_ref = x0``, ``z0 = 0``.
:class:`DecoderManifold` wraps the trained decoder's numba kernels
(:func:`autoencoder.manifold.load_trained_manifold`); it never imports TensorFlow.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fom.errors import InputError

from .kernels import householder_lstsq

__all__ = ["AffineManifold", "DecoderManifold", "Manifold", "fit_latent", "pod"]


@runtime_checkable
class Manifold(Protocol):
    """The interface the online solvers use (see the module docstring)."""

    p: int
    n_dofs: int
    kind: str

    def decode(self, z: np.ndarray) -> np.ndarray: ...

    def decode_with_jacobian(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def decode_rows(self, z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def initial_condition(self, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def project(self, states: np.ndarray, x_ref: np.ndarray) -> np.ndarray: ...


def _latent(z: Any, p: int) -> np.ndarray:
    arr = np.ascontiguousarray(z, dtype=np.float64)
    if arr.shape != (p,):
        raise InputError(f"latent state has shape {arr.shape}, expected ({p},)")
    return arr


def _states_2d(states: Any, n_dofs: int, what: str = "states") -> tuple[np.ndarray, tuple]:
    arr = np.asarray(states, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != n_dofs:
        raise InputError(f"{what} have shape {arr.shape}; the last axis must be N = {n_dofs}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contain NaN or Inf values")
    return arr.reshape(-1, n_dofs), arr.shape


# ----------------------------------------------------------------------------- POD


#: Below this many rows and columns the exact thin SVD is fast (seconds); above it, and when
#: only a few leading modes are wanted, :func:`pod` goes through the Gram matrix.
GRAM_MIN_SIZE = 1000
#: The Gram route is used only while the last wanted singular value is at least this fraction
#: of the first (its eigenvectors are then accurate to about ``eps * (s_1 / s_k)^2``).
GRAM_MIN_RATIO = 1e-4


def pod(snapshots: np.ndarray, n_modes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Thin SVD of a snapshot matrix: left singular vectors and singular values.

    Parameters
    ----------
    snapshots : ndarray, shape (n_snap, N)
        One snapshot per row (the transpose of the usual N x n_snap snapshot matrix ``X``).
    n_modes : int, optional
        Only the leading ``n_modes`` left singular vectors are wanted (default: all
        ``r = min(n_snap, N)``). The singular values are always all ``r``.

    Returns
    -------
    basis : ndarray, shape (N, n_modes or r)
        Leading left singular vectors of ``X = snapshots.T``, orthonormal, each with its
        largest-magnitude entry positive (a deterministic sign).
    singular_values : ndarray, shape (r,)
        In decreasing order.

    Notes
    -----
    The exact route: for ``n_snap > N`` (the Burgers study: 40 080 x 256) the rows are first
    reduced by a QR factorization, ``X^T = Q R``, so only the N x N factor ``R`` is
    decomposed: ``X = R^T Q^T = V S (Q U)^T`` with ``R = U S V^T``; otherwise the thin SVD of
    ``X``. Its cost is dominated by all ``r`` pairs of singular vectors (80 s on 2 cores at
    6004 x 6728, 2D Burgers at 60^2; minutes on a loaded machine).

    The Gram route, when ``n_modes`` is given, both sizes are at least
    :data:`GRAM_MIN_SIZE` and ``s_k >= GRAM_MIN_RATIO * s_1`` (``k = n_modes``): the
    symmetric eigenproblem of the Gram matrix of the smaller side, ``X^T X = V S^2 V^T`` (or
    ``X X^T = U S^2 U^T``), then ``U_k = X V_k S_k^{-1}`` and one QR to restore
    orthonormality to round-off (method of snapshots; Sirovich 1987). The leading singular
    values agree with the SVD's to ~1e-14 relative and the vectors to ~``eps (s_1/s_k)^2``;
    singular values near ``sqrt(eps) s_1`` and below are resolved only to about
    ``sqrt(eps r) s_1`` (their squares, which the energy fractions use, to ``eps r s_1^2``).
    At 6004 x 6728, 10 modes: 24 s instead of 80 s (``benchmarks/pod_speed.py``).
    """
    n_snap, n = snapshots.shape
    r_max = min(n_snap, n)
    k = r_max if n_modes is None else int(n_modes)
    if not 1 <= k <= r_max:
        raise InputError(f"n_modes must lie in [1, {r_max}], got {n_modes!r}")
    out = None
    if n_modes is not None and r_max >= GRAM_MIN_SIZE:
        out = _pod_gram(snapshots, k)
    if out is None:
        out = _pod_svd(snapshots)
    basis, s = out
    basis = basis[:, :k]
    idx = np.argmax(np.abs(basis), axis=0)
    signs = np.sign(basis[idx, np.arange(basis.shape[1])])
    signs[signs == 0] = 1.0
    return np.ascontiguousarray(basis * signs), s


def _pod_svd(snapshots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact route of :func:`pod`: every left singular vector, unsigned."""
    n_snap, n = snapshots.shape
    if n_snap > n:
        r = np.linalg.qr(snapshots, mode="r")
        _, s, vt = np.linalg.svd(r, full_matrices=False)
        return vt.T, s
    basis, s, _ = np.linalg.svd(snapshots.T, full_matrices=False)
    return basis, s


def _pod_gram(snapshots: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The Gram route of :func:`pod` (``k`` leading vectors, unsigned), or None when the
    ``k``-th singular value is too small relative to the first for it."""
    import scipy.linalg as sla

    a = np.asarray(snapshots, dtype=np.float64)
    wide = a.shape[0] <= a.shape[1]          # fewer snapshots than dofs: X^T X is smaller
    gram = a @ a.T if wide else a.T @ a
    lam, vec = sla.eigh(gram, driver="evd", overwrite_a=True)
    lam, vec = lam[::-1], vec[:, ::-1]
    s = np.sqrt(np.clip(lam, 0.0, None))
    if not s[0] > 0 or s[k - 1] < GRAM_MIN_RATIO * s[0]:
        return None
    basis = (a.T @ vec[:, :k]) / s[:k] if wide else np.ascontiguousarray(vec[:, :k])
    q, rr = np.linalg.qr(basis)
    return q * np.where(np.diag(rr) < 0, -1.0, 1.0), s


@dataclass(eq=False)
class AffineManifold:
    """Affine POD trial manifold ``x~ = x_ref + Phi z`` (POD-Galerkin / POD-LSPG).

    Parameters
    ----------
    basis : ndarray, shape (N, p)
        Orthonormal columns ``Phi``.
    singular_values : ndarray, optional
        All singular values of the training data (kept for the energy criterion).
    center : {"initial", "none"}
        How the training data were centered: ``"initial"`` (deviations from ``x0(mu)``, the
        default, docs/method.md; then ``x_ref = x0``, ``z0 = 0``) or ``"none"`` (raw states;
        then ``z0 = Phi^T x0`` and ``x_ref = x0 - Phi z0``, Remark 3.1).
    """

    basis: np.ndarray
    singular_values: np.ndarray | None = None
    center: str = "initial"
    kind: str = field(default="pod", init=False)
    #: the Jacobian ``Phi`` is constant (the solvers skip curvature corrections)
    affine: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        basis = np.array(self.basis, dtype=np.float64, order="C")
        if basis.ndim != 2 or basis.shape[1] < 1 or basis.shape[1] > basis.shape[0]:
            raise InputError(f"POD basis must have shape (N, p) with 1 <= p <= N, got "
                             f"{basis.shape}")
        if not np.all(np.isfinite(basis)):
            raise InputError("POD basis contains NaN or Inf values")
        if self.center not in ("initial", "none"):
            raise InputError(f"center must be 'initial' or 'none', got {self.center!r}")
        basis.setflags(write=False)
        self.basis = basis
        if self.singular_values is not None:
            self.singular_values = np.asarray(self.singular_values, dtype=np.float64)

    # -------------------------------------------------------------- construction
    @classmethod
    def from_snapshots(cls, data: Any, p: int | None = None, *, center: str = "initial",
                       energy: float | None = None) -> AffineManifold:
        """POD of training snapshots.

        Parameters
        ----------
        data : SnapshotSet or ndarray
            A :class:`fom.snapshots.SnapshotSet`, an array ``(n_mu, n_t, N)`` of trajectories,
            or (with ``center="none"`` only) an array ``(n_snap, N)``.
        p : int, optional
            Number of basis vectors. Exactly one of ``p`` and ``energy`` is given.
        center : {"initial", "none"}
            ``"initial"`` subtracts each trajectory's first state ``x^0(mu) = x0(mu)``.
        energy : float in (0, 1], optional
            Keep the smallest ``p`` with ``sum_{k<=p} s_k^2 >= energy * sum_k s_k^2``.
        """
        states = getattr(data, "states", data)
        arr = np.asarray(states, dtype=np.float64)
        if center not in ("initial", "none"):
            raise InputError(f"center must be 'initial' or 'none', got {center!r}")
        if arr.ndim == 3:
            if center == "initial":
                arr = arr - arr[:, :1, :]
            arr = arr.reshape(-1, arr.shape[-1])
        elif arr.ndim != 2 or center == "initial":
            raise InputError(
                f"snapshots have shape {arr.shape}; expected (n_mu, n_t, N)"
                + ("" if center == "initial" else " or (n_snap, N)"))
        if arr.shape[0] < 1 or not np.all(np.isfinite(arr)):
            raise InputError("snapshots are empty or contain NaN or Inf values")
        if (p is None) == (energy is None):
            raise InputError("give exactly one of p and energy")
        if p is not None and (int(p) != p or not 1 <= p <= min(arr.shape)):
            raise InputError(f"POD dimension p must be an integer in [1, {min(arr.shape)}], "
                             f"got {p!r}")
        basis, s = pod(arr, None if p is None else int(p))
        if energy is not None:
            p = cls.p_for_energy(s, energy)
        assert p is not None
        full = cls(basis, s, center)
        return full.truncate(int(p)) if p < basis.shape[1] else full

    @staticmethod
    def p_for_energy(singular_values: np.ndarray, energy: float) -> int:
        """Smallest ``p`` whose leading singular values hold ``energy`` of the total."""
        if not 0 < energy <= 1:
            raise InputError(f"energy must lie in (0, 1], got {energy!r}")
        s2 = np.asarray(singular_values, dtype=np.float64) ** 2
        total = s2.sum()
        if total == 0:
            return 1
        frac = np.cumsum(s2) / total
        return int(min(np.searchsorted(frac, energy * (1 - 1e-15)) + 1, s2.size))

    def truncate(self, p: int) -> AffineManifold:
        """The manifold spanned by the first ``p`` basis vectors (same singular values)."""
        if int(p) != p or not 1 <= p <= self.basis.shape[1]:
            raise InputError(f"p must be an integer in [1, {self.basis.shape[1]}], got {p!r}")
        return AffineManifold(self.basis[:, : int(p)], self.singular_values, self.center)

    def energy(self, p: int | None = None) -> float:
        """Fraction ``sum_{k<=p} s_k^2 / sum_k s_k^2`` of the training data's energy."""
        if self.singular_values is None:
            raise InputError("this POD manifold was built without singular values")
        s2 = self.singular_values**2
        return float(s2[: (self.p if p is None else p)].sum() / s2.sum())

    # -------------------------------------------------------------- interface
    @property
    def p(self) -> int:
        return self.basis.shape[1]

    @property
    def n_dofs(self) -> int:
        return self.basis.shape[0]

    def decode(self, z: np.ndarray) -> np.ndarray:
        """``g(z) = Phi z``."""
        return self.basis @ _latent(z, self.p)

    def decode_with_jacobian(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(Phi z, Phi)``; the Jacobian is the (read-only) basis itself."""
        return self.basis @ _latent(z, self.p), self.basis

    def decode_rows(self, z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``rows`` of ``g(z)`` and of ``J``."""
        rows = np.asarray(rows, dtype=np.int64)
        sub = self.basis[rows]
        return sub @ _latent(z, self.p), sub

    def initial_condition(self, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_ref, z0)`` with ``x_ref + Phi z0 = x0``: ``(x0, 0)`` for centered POD."""
        x0 = np.array(x0, dtype=np.float64).reshape(-1)
        if x0.shape != (self.n_dofs,):
            raise InputError(f"x0 has shape {x0.shape}, expected ({self.n_dofs},)")
        if self.center == "initial":
            return x0, np.zeros(self.p)
        z0 = self.basis.T @ x0
        return x0 - self.basis @ z0, z0

    def project(self, states: np.ndarray, x_ref: np.ndarray) -> np.ndarray:
        """Orthogonal projection ``x_ref + Phi Phi^T (x - x_ref)``: the best approximation."""
        flat, shape = _states_2d(states, self.n_dofs)
        dev = flat - x_ref
        return (x_ref + (dev @ self.basis) @ self.basis.T).reshape(shape)

    def describe(self) -> dict[str, Any]:
        """Attributes recorded with a result."""
        out: dict[str, Any] = {"kind": "pod", "p": self.p, "center": self.center}
        if self.singular_values is not None:
            out["energy"] = self.energy()
        return out


# ----------------------------------------------------------------------------- decoder


def cone_fraction(trained: Any, rows: np.ndarray) -> float:
    """The multiply-adds of the decoder's dependency cone of state rows ``rows``, as a
    fraction of the whole decoder's (:func:`autoencoder.restricted.cone_cost`); 0 for a
    decoder without exported layers (the analytic decoders of :mod:`rom.testing`)."""
    cost = getattr(trained, "cone_cost", None)
    if cost is None:
        return 0.0
    return float(cost(np.ascontiguousarray(rows, dtype=np.int64))["fraction"])


class DecoderManifold:
    """Nonlinear trial manifold ``x~ = x_ref + g(z)`` of a trained convolutional decoder.

    Wraps any object with the ``TrainedManifold`` interface of docs/CONTRACTS.md (``p``,
    ``n_dofs``, ``target``, ``decode``, ``decode_with_jacobian``, ``decode_rows``, ``encode``,
    ``reference_state``): the numba kernels of :mod:`autoencoder.manifold`, or an analytic
    decoder in the tests.

    Parameters
    ----------
    trained : TrainedManifold
    source : str, optional
        Where it came from (the model folder), recorded with results.
    projection : {"encoder", "lsq"}
        How :meth:`project` approximates FOM states on the manifold: ``"encoder"`` is
        ``x_ref + g(h(u))`` with the encoder ``h`` (the autoencoder's own reconstruction, as
        in the paper's section 6), ``"lsq"`` the best approximation ``x_ref + g(z*)``,
        ``z* = argmin ||x - x_ref - g(z)||`` per snapshot by Gauss–Newton started at the
        encoder's guess (never worse than ``"encoder"``).
    """

    kind = "decoder"
    affine = False
    #: :meth:`decode_rows` evaluates the whole decoder and takes the rows when the rows'
    #: dependency cone holds at least this fraction of the decoder's multiply-adds
    full_decoder_above: float = 0.5

    def __init__(self, trained: Any, source: str | None = None,
                 projection: str = "encoder") -> None:
        for name in ("p", "n_dofs", "decode", "decode_with_jacobian", "decode_rows", "encode",
                     "reference_state"):
            if not hasattr(trained, name):
                raise InputError(f"decoder object {type(trained).__name__} lacks '{name}'")
        if projection not in ("encoder", "lsq"):
            raise InputError(f"projection must be 'encoder' or 'lsq', got {projection!r}")
        self.trained = trained
        self.source = source
        self.projection = projection
        self.p = int(trained.p)
        self.n_dofs = int(trained.n_dofs)
        self.target = str(getattr(trained, "target", "deviation"))
        if self.target not in ("deviation", "raw"):
            raise InputError(f"decoder target must be 'deviation' or 'raw', got {self.target!r}")
        self._rows_key: bytes | None = None
        self._rows_full = False

    @classmethod
    def load(cls, model_dir: str | os.PathLike, projection: str = "encoder") -> DecoderManifold:
        """Load a trained model folder (``<output_dir>/models/p<p>``) without TensorFlow."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise InputError(f"trained model folder {model_dir} does not exist "
                             f"(run 'mrom train' first)")
        from autoencoder.manifold import load_trained_manifold

        return cls(load_trained_manifold(model_dir), source=str(model_dir),
                   projection=projection)

    def decode(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.trained.decode(_latent(z, self.p)), dtype=np.float64)

    def decode_with_jacobian(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(g(z), J(z))`` from one evaluation of the decoder kernels (forward mode)."""
        g, jac = self.trained.decode_with_jacobian(_latent(z, self.p))
        return g, jac

    def decode_rows(self, z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``rows`` of ``g(z)`` and ``J(z)`` (hyper-reduction).

        By the decoder's restricted kernels (``trained.decode_rows``), unless the rows depend
        on most of the decoder: when their dependency cone holds at least
        :attr:`full_decoder_above` of its multiply-adds
        (:func:`rom.manifolds.cone_fraction`), the full kernels (the same work, faster per
        multiply-add) are evaluated and the rows taken. That happens only on small images,
        e.g. 1D Burgers' 16 x 16, where a useful sample mesh reads most of the state anyway;
        the choice is made once per set of rows and does not depend on timings.
        """
        z = _latent(z, self.p)
        rows = np.asarray(rows, dtype=np.int64)
        key = rows.tobytes()
        if key != self._rows_key:
            if rows.size and (rows.min() < 0 or rows.max() >= self.n_dofs):
                raise InputError(f"rows must lie in [0, {self.n_dofs}), got {rows.min()}.."
                                 f"{rows.max()}")
            self._rows_full = cone_fraction(self.trained, rows) >= self.full_decoder_above
            self._rows_key = key
        if self._rows_full:
            g, jac = self.trained.decode_with_jacobian(z)
            return g[rows], jac[rows]
        return self.trained.decode_rows(z, rows)

    def initial_condition(self, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_ref, z0) = (x0 - g(z0), z0)``, ``z0 = h(0)`` or ``h(x0)`` (Remark 3.1)."""
        x0 = np.array(x0, dtype=np.float64).reshape(-1)
        if x0.shape != (self.n_dofs,):
            raise InputError(f"x0 has shape {x0.shape}, expected ({self.n_dofs},)")
        x_ref, z0 = self.trained.reference_state(x0)
        return (np.asarray(x_ref, dtype=np.float64).copy(),
                np.asarray(z0, dtype=np.float64).copy())

    def encoder_input(self, states: np.ndarray, x_ref: np.ndarray) -> np.ndarray:
        """What the encoder was trained on: ``x - x0`` (target "deviation") or ``x`` ("raw").

        For the deviation target ``x0 = x_ref + g(h(0))``, recovered from ``x_ref`` alone.
        """
        if self.target == "raw":
            return states
        z0 = np.asarray(self.trained.encode(np.zeros(self.n_dofs)), dtype=np.float64)
        x0 = x_ref + self.decode(z0)
        return states - x0

    def project(self, states: np.ndarray, x_ref: np.ndarray,
                method: str | None = None) -> np.ndarray:
        """Approximation of ``states`` on the manifold (see ``projection`` in the class doc)."""
        method = method or self.projection
        if method not in ("encoder", "lsq"):
            raise InputError(f"projection must be 'encoder' or 'lsq', got {method!r}")
        flat, shape = _states_2d(states, self.n_dofs)
        x_ref = np.asarray(x_ref, dtype=np.float64)
        inputs = self.encoder_input(flat, x_ref)
        if hasattr(self.trained, "encode_many"):
            codes = np.asarray(self.trained.encode_many(inputs), dtype=np.float64)
        else:
            codes = np.array([self.trained.encode(np.ascontiguousarray(u)) for u in inputs],
                             dtype=np.float64).reshape(-1, self.p)
        out = np.empty_like(flat)
        for i in range(flat.shape[0]):
            z = codes[i]
            if method == "lsq":
                z = fit_latent(self, flat[i] - x_ref, z)
            out[i] = x_ref + self.decode(z)
        return out.reshape(shape)

    def describe(self) -> dict[str, Any]:
        return {"kind": "decoder", "p": self.p, "target": self.target,
                "source": self.source or "", "projection": self.projection}


# ----------------------------------------------------------------------------- fitting


def fit_latent(manifold: Manifold, target: np.ndarray, z_init: np.ndarray, *,
               max_iter: int = 50, tol: float = 1e-12) -> np.ndarray:
    """``argmin_z ||g(z) - target||_2`` by Gauss–Newton with backtracking, from ``z_init``.

    Returns the best iterate found (never worse than ``z_init``); stops when the relative
    gradient ``||Q^T r|| / ||r||`` or the step falls below ``tol``.
    """
    z = np.array(z_init, dtype=np.float64)
    g, jac = manifold.decode_with_jacobian(z)
    r = (g - target)[:, None]
    cost = float(r[:, 0] @ r[:, 0])
    n, p = jac.shape
    wa, wb, dz = np.empty((n, p)), np.empty((n, 1)), np.empty((p, 1))
    for _ in range(max_iter):
        if cost == 0.0:
            break
        jac_c = np.ascontiguousarray(jac, dtype=np.float64)
        if householder_lstsq(jac_c, r, wa, wb, dz) > 0.0:
            step = -dz[:, 0]
        else:
            step = -np.linalg.lstsq(jac_c, r[:, 0], rcond=None)[0]
        qtr = float(np.linalg.norm(jac_c @ step))  # = ||Q^T r|| at the least-squares step
        if qtr <= tol * math.sqrt(cost):
            break
        alpha, accepted = 1.0, False
        for _ in range(30):
            zt = z + alpha * step
            gt, jt = manifold.decode_with_jacobian(zt)
            rt = gt - target
            ct = float(rt @ rt)
            if ct < cost:
                z, jac, r, cost, accepted = zt, jt, rt[:, None], ct, True
                break
            alpha *= 0.5
        if not accepted or np.linalg.norm(alpha * step) <= tol * (1 + np.linalg.norm(z)):
            break
    return z
