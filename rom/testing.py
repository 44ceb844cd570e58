"""An analytic stand-in for a trained decoder, for tests, examples and benchmarks.

:class:`QuadraticDecoder` has the ``TrainedManifold`` interface of docs/CONTRACTS.md
(``p, n_dofs, target, decode, decode_with_jacobian, decode_rows, encode, reference_state``)
with a genuinely nonlinear map whose Jacobian is known exactly:

    g(z) = b + Phi z + 1/2 Psi (z * z),        J(z) = Phi + Psi diag(z).

The encoder is the least-squares inverse ``h(u) = argmin_z ||g(z) - u||`` (Gauss–Newton from
``Phi^+ (u - b)``), so ``g(h(u)) = u`` for ``u`` on the manifold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fom.errors import InputError


class QuadraticDecoder:
    """``g(z) = b + Phi z + Psi (z * z) / 2`` with the decoder-kernel interface.

    Parameters
    ----------
    phi, psi : ndarray, shape (N, p)
    bias : ndarray, shape (N,), optional
        ``b``; nonzero makes ``h(0) != 0``, so ``x_ref != x0`` (Remark 3.1 exercised).
    target : {"deviation", "raw"}
        What the "autoencoder" was trained on (section 5.3 of the paper; docs/method.md).
    """

    def __init__(self, phi: np.ndarray, psi: np.ndarray, bias: np.ndarray | None = None,
                 target: str = "deviation") -> None:
        self.phi = np.ascontiguousarray(phi, dtype=np.float64)
        self.psi = np.ascontiguousarray(psi, dtype=np.float64)
        if self.phi.ndim != 2 or self.phi.shape != self.psi.shape:
            raise InputError(f"phi and psi must have the same shape (N, p), got "
                             f"{self.phi.shape} and {self.psi.shape}")
        self.n_dofs, self.p = self.phi.shape
        self.bias = (np.zeros(self.n_dofs) if bias is None
                     else np.ascontiguousarray(bias, dtype=np.float64))
        if target not in ("deviation", "raw"):
            raise InputError(f"target must be 'deviation' or 'raw', got {target!r}")
        self.target = target
        self.calls = 0  # decode_with_jacobian evaluations (the tests count them)

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.bias + self.phi @ z + 0.5 * (self.psi @ (z * z))

    def decode_with_jacobian(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        return self.decode(z), self.phi + self.psi * z[None, :]

    def decode_rows(self, z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        g = self.bias[rows] + self.phi[rows] @ z + 0.5 * (self.psi[rows] @ (z * z))
        return g, self.phi[rows] + self.psi[rows] * z[None, :]

    def encode(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        z = np.linalg.lstsq(self.phi, u - self.bias, rcond=None)[0]
        cost = np.inf
        for _ in range(50):
            g = self.decode(z)
            r = g - u
            c = float(r @ r)
            if c >= cost * (1 - 1e-15):
                break
            cost = c
            jac = self.phi + self.psi * z[None, :]
            z = z - np.linalg.lstsq(jac, r, rcond=None)[0]
        return z

    def reference_state(self, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x0 = np.asarray(x0, dtype=np.float64)
        z0 = self.encode(np.zeros(self.n_dofs) if self.target == "deviation" else x0)
        return x0 - self.decode(z0), z0


def quadratic_decoder_loader(train_states: np.ndarray) -> Any:
    """A ``load_decoder(model_dir, projection)`` for :func:`rom.online.roms_from_config` and
    :func:`rom.sweep.sweep` that stands in for trained models: a :class:`QuadraticDecoder` on
    the POD basis of ``train_states`` with ``p`` from the folder name (``p<p>``), a small
    random quadratic term and bias (seeded by ``p``).
    """
    from .manifolds import AffineManifold, DecoderManifold

    def load(folder: Any, projection: str) -> DecoderManifold:
        p = int(folder.name[1:])
        basis = AffineManifold.from_snapshots(train_states, p).basis
        rng = np.random.default_rng(p)
        psi = 0.02 * np.linalg.qr(rng.standard_normal(basis.shape))[0]
        dec = QuadraticDecoder(basis, psi, bias=1e-3 * rng.standard_normal(basis.shape[0]))
        return DecoderManifold(dec, source=str(folder), projection=projection)

    return load
