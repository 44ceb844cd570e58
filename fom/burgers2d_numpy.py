"""A plain NumPy/SciPy implementation of the 2D viscous Burgers scheme (the speed baseline).

The same equations (1)-(2) as :mod:`fom.burgers2d`, written independently of its kernels: the
velocity as array expressions on the ``(m, m)`` interior padded with the zero boundary, the
Jacobian assembled from ``scipy.sparse`` operators (Kronecker products of 1D backward
differences and second differences, diagonal scalings, ``sp.bmat``), and :func:`fom.solve`
drives it through its generic Newton loop with ``spsolve`` at every iteration, as the NM-ROM
study's FOM does. It is what ``benchmarks/fom_speed.py`` measures the numba FOM against and
the oracle of the tests. It has no fused kernel and no Jacobian structure.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .burgers2d import Burgers2D


class Burgers2DNumPy(Burgers2D):
    """:class:`fom.burgers2d.Burgers2D` with vectorised NumPy velocity and a ``scipy.sparse``
    Jacobian (no numba)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        m, h = self.m, self.h
        eye = sp.identity(m, format="csr")
        back = sp.diags([np.ones(m), -np.ones(m - 1)], [0, -1], format="csr") / h
        second = sp.diags([np.ones(m - 1), -2.0 * np.ones(m), np.ones(m - 1)], [-1, 0, 1],
                          format="csr") / (h * h)
        # x varies fastest: an operator along x acts within each block of m entries
        self._bx = sp.kron(eye, back, format="csr")
        self._by = sp.kron(back, eye, format="csr")
        self._lap = (sp.kron(eye, second) + sp.kron(second, eye)).tocsr() / self.reynolds

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        size = self.m * self.m
        return x[:size], x[size:]

    def velocity(self, x, t, mu):
        self.check_mu(mu)
        u, v = self._split(x)
        m, h = self.m, self.h
        out = []
        for s in (u, v):
            pad = np.zeros((m + 2, m + 2))  # rows: y, columns: x, zero boundary
            pad[1:-1, 1:-1] = s.reshape(m, m)
            c = pad[1:-1, 1:-1]
            west, east = pad[1:-1, :-2], pad[1:-1, 2:]
            south, north = pad[:-2, 1:-1], pad[2:, 1:-1]
            conv = u.reshape(m, m) * (c - west) / h + v.reshape(m, m) * (c - south) / h
            lap = (east + west + north + south - 4.0 * c) / (self.reynolds * h * h)
            out.append((lap - conv).ravel())
        return np.concatenate(out)

    def jacobian(self, x, t, mu):
        self.check_mu(mu)
        u, v = self._split(x)
        bx, by, lap = self._bx, self._by, self._lap
        du, dv = sp.diags(u), sp.diags(v)
        transport = -(du @ bx) - (dv @ by) + lap  # linear in s for frozen (u, v)
        juu = transport - sp.diags(bx @ u)
        juv = -sp.diags(by @ u)
        jvu = -sp.diags(bx @ v)
        jvv = transport - sp.diags(by @ v)
        return sp.bmat([[juu, juv], [jvu, jvv]], format="csr")

    def jacobian_structure(self):
        return None

    def velocity_jacobian_into(self, x, t, mu, f, data):
        raise NotImplementedError("Burgers2DNumPy has no fused kernel")
