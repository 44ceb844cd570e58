"""A plain NumPy/SciPy implementation of the 1D Burgers scheme (the speed baseline).

Same equations (3)-(4) as :mod:`fom.burgers1d`, written independently as vectorised NumPy
array expressions with a ``scipy.sparse`` Jacobian; :func:`fom.solve` drives it through the
generic Newton loop with ``spsolve``. It serves as the straightforward implementation that
``benchmarks/fom_speed.py`` measures the numba FOM against, and as an independent oracle in
the tests. It has no compiled whole-trajectory kernel.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .burgers1d import Burgers1D


def godunov_numpy(ul: np.ndarray, ur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised Godunov flux of ``u^2/2`` and its derivatives w.r.t. ``ul`` and ``ur``."""
    shock = ul > ur
    # the state whose flux is taken: left if it is upwind, right if it is, sonic point otherwise
    take_left = np.where(shock, ul + ur > 0, ul >= 0)
    take_right = np.where(shock, ul + ur <= 0, (ul < 0) & (ur <= 0))
    flux = np.where(take_left, 0.5 * ul**2, np.where(take_right, 0.5 * ur**2, 0.0))
    d_left = np.where(take_left, ul, 0.0)
    d_right = np.where(take_right, ur, 0.0)
    return flux, d_left, d_right


class Burgers1DNumPy(Burgers1D):
    """:class:`fom.Burgers1D` with vectorised NumPy residual and Jacobian (no numba)."""

    name = "burgers1d"

    def _faces(self, w: np.ndarray, mu: np.ndarray):
        left = np.concatenate(([mu[0]], w))  # left states of faces -1/2 .. N-1/2
        right = np.concatenate((w, [w[-1]]))  # right states (zero-gradient ghost at outflow)
        return godunov_numpy(left, right)

    def velocity(self, x, t, mu):
        mu = self.check_mu(mu)
        flux, _, _ = self._faces(np.asarray(x, dtype=np.float64), mu)
        return -(flux[1:] - flux[:-1]) / self.dx + self.source(mu)

    def jacobian(self, x, t, mu):
        mu = self.check_mu(mu)
        w = np.asarray(x, dtype=np.float64)
        _, dl, dr = self._faces(w, mu)
        # f_i = -(F_{i+1/2}(w_i, w_{i+1}) - F_{i-1/2}(w_{i-1}, w_i)) / dx
        main = (dr[:-1] - dl[1:]) / self.dx
        main[-1] -= dr[-1] / self.dx  # outflow ghost equals w_{N-1}
        upper = -dr[1:-1] / self.dx
        lower = dl[1:-1] / self.dx
        return sp.diags([lower, main, upper], [-1, 0, 1], format="csr")

    def compiled_integrator(self):
        return None
