"""The full-order-model interface that the time steppers and the ROMs rely on (docs/CONTRACTS.md).

A problem is a semi-discrete parameterized system ``dx/dt = f(x, t; mu)``, ``x(0) = x0(mu)``,
``x`` in ``R^N``. It exposes the velocity ``f`` and its analytic Jacobian ``df/dx`` (scipy CSR),
and, for hyper-reduction, both restricted to a set of rows: the values on those rows need only
the rows plus their stencil neighbours (:meth:`Problem.stencil`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .newton import NewtonOptions
from .sampled import SampledOperator


class Problem(ABC):
    """Abstract parameterized full-order model.

    Subclasses set the class attributes and implement the abstract methods. Arrays are float64.

    Attributes
    ----------
    name : str
        Registry name (``mrom snapshots --problem NAME``).
    param_names : tuple of str
        Names of the parameters ``mu``, in order.
    param_bounds : ndarray, shape (n_params, 2)
        Lower and upper bound of each parameter (the parameter domain of the study).
    n_dofs : int
        State dimension ``N``.
    grid : dict of str to ndarray
        Coordinates of the degrees of freedom (written to ``/grid`` in snapshot files).
    fields : tuple of str
        Names of the state's fields, in state order (``("w",)``, ``("u", "v")``, ...).
    grid_shape : tuple of int
        Spatial shape of one field's unknowns: ``(n,)`` in 1D, ``(ny, nx)`` in 2D. The state
        is the concatenation over fields of each field's unknowns in row-major order of
        ``grid_shape`` (in 2D the x index varies fastest): entry ``c * ny * nx + j * nx + i``
        is field ``c`` at column ``i``, row ``j``. ``n_dofs = len(fields) * prod(grid_shape)``.
    image_shape : tuple of int
        Shape of the state as an image for the convolutional autoencoder (the paper's
        restriction operator), e.g. ``(16, 16, 1)`` for 1D Burgers or ``(ny, nx, n_fields)``
        for a 2D problem; its product is ``n_dofs``.
    boundary_values : tuple of float or None
        The value of each field on the domain boundary, if the problem has one (uniform
        Dirichlet data, e.g. 0 for 2D Burgers), else None. The autoencoder pads images of raw
        states with it (``[autoencoder] image_size``).
    dt, t_final : float
        Default time step and final time.
    """

    name: str = ""
    param_names: tuple[str, ...] = ()
    param_bounds: np.ndarray
    n_dofs: int
    fields: tuple[str, ...] = ("w",)
    grid_shape: tuple[int, ...]
    grid: dict[str, np.ndarray]
    image_shape: tuple[int, ...]
    boundary_values: tuple[float, ...] | None = None
    dt: float
    t_final: float

    # ---------------------------------------------------------------- parameters
    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def check_mu(self, mu: Any, *, check_bounds: bool = False) -> np.ndarray:
        """Return ``mu`` as a float64 vector after validating its length and values.

        Raises
        ------
        InputError
            If ``mu`` has the wrong number of entries, is not numeric or not finite, or (with
            ``check_bounds``) lies outside :attr:`param_bounds`.
        """
        try:
            arr = np.asarray(mu, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(f"parameter {mu!r} is not a list of numbers") from None
        if arr.size != self.n_params:
            raise InputError(
                f"problem {self.name} takes {self.n_params} parameters "
                f"({', '.join(self.param_names)}), got {arr.size}: {arr.tolist()}"
            )
        if not np.all(np.isfinite(arr)):
            raise InputError(f"parameter values must be finite, got {arr.tolist()}")
        if check_bounds:
            lo, hi = self.param_bounds[:, 0], self.param_bounds[:, 1]
            bad = np.flatnonzero((arr < lo) | (arr > hi))
            if bad.size:
                k = int(bad[0])
                raise InputError(
                    f"parameter {self.param_names[k]} = {arr[k]} is outside its range "
                    f"[{lo[k]}, {hi[k]}]"
                )
        return arr

    def check_state(self, x: Any, what: str = "state", *, finite: bool = True) -> np.ndarray:
        """Return ``x`` as a contiguous float64 vector of length ``n_dofs``, with finite entries
        unless ``finite=False`` (a kernel's input: a diverging Newton must report itself)."""
        arr = np.ascontiguousarray(x, dtype=np.float64)
        if arr.shape != (self.n_dofs,):
            raise InputError(
                f"{what} has shape {arr.shape}, expected ({self.n_dofs},) for problem {self.name}"
            )
        if finite and not np.all(np.isfinite(arr)):
            raise InputError(f"{what} contains NaN or Inf values")
        return arr

    @property
    def n_fields(self) -> int:
        return len(self.fields)

    def newton_defaults(self) -> NewtonOptions:
        """The Newton tolerances :func:`fom.solve` uses for this problem when none are given."""
        return NewtonOptions()

    def lu_options(self) -> dict[str, Any]:
        """Keyword arguments of ``scipy.sparse.linalg.splu`` for the sparse FOM solver's
        factorizations of ``alpha0 I - beta dt df/dx`` (:mod:`fom.sparse_newton`).

        The default, minimum-degree ordering on the pattern of ``M^T + M`` with partial
        pivoting, suits the structurally symmetric Jacobians of stencil discretizations (on
        2D Burgers 40-50 % less fill than COLAMD and solves about twice as fast); a problem
        whose matrix needs no pivoting may also turn pivoting off.
        """
        return {"permc_spec": "MMD_AT_PLUS_A"}

    # ---------------------------------------------------------------- model
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this problem (JSON-serialisable)."""

    def config_json(self) -> str:
        return json.dumps({"name": self.name, **self.config()}, sort_keys=True)

    @abstractmethod
    def initial_state(self, mu: np.ndarray) -> np.ndarray:
        """Initial state ``x0(mu)``, shape (N,)."""

    @abstractmethod
    def velocity(self, x: np.ndarray, t: float, mu: np.ndarray) -> np.ndarray:
        """Velocity ``f(x, t; mu)``, shape (N,)."""

    @abstractmethod
    def jacobian(self, x: np.ndarray, t: float, mu: np.ndarray) -> sp.csr_matrix:
        """Analytic Jacobian ``df/dx`` as a CSR matrix of shape (N, N)."""

    # ---------------------------------------------------------------- fused evaluation
    def jacobian_structure(self) -> tuple[np.ndarray, np.ndarray] | None:
        """CSR structure ``(indptr, indices)`` that holds ``df/dx`` at every state, or None.

        A problem that returns a structure also implements :meth:`velocity_jacobian_into`,
        which the online ROM solvers call once per Gauss-Newton iterate without building a
        sparse matrix object.
        """
        return None

    def velocity_jacobian_into(self, x: np.ndarray, t: float, mu: np.ndarray, f: np.ndarray,
                               data: np.ndarray) -> None:
        """``f[:] = f(x, t; mu)`` and ``data[:]`` = the values of ``df/dx`` on
        :meth:`jacobian_structure` (only for problems that declare a structure)."""
        raise NotImplementedError(f"problem {self.name} has no fused velocity/Jacobian kernel")

    # ---------------------------------------------------------------- hyper-reduction
    def sample(self, rows: Any) -> SampledOperator:
        """The velocity and its Jacobian on the sample rows ``rows``, evaluated from the state
        on their stencil only (:class:`fom.sampled.SampledOperator`; hyper-reduction)."""
        raise InputError(f"problem {self.name} has no sampled (hyper-reduced) evaluation")

    def stencil(self, rows: np.ndarray) -> np.ndarray:
        """Sorted indices of the state entries that ``f[rows]`` depends on (rows included).

        Default: the stencil of :meth:`sample`; a problem without one overrides this.
        """
        return self.sample(np.unique(self.check_rows(rows))).stencil

    def velocity_rows(self, x: np.ndarray, t: float, mu: np.ndarray,
                      rows: np.ndarray) -> np.ndarray:
        """``f(x, t; mu)[rows]``, reading only ``x[self.stencil(rows)]`` (default: through
        :meth:`sample`, so bit-identical to the sampled operator)."""
        _, (f, _), where = self._sampled_rows(x, t, mu, rows)
        return f[where]

    def jacobian_rows(self, x: np.ndarray, t: float, mu: np.ndarray,
                      rows: np.ndarray) -> sp.csr_matrix:
        """Rows ``rows`` of ``df/dx`` as CSR of shape (len(rows), N), reading only the stencil
        (default: through :meth:`sample`)."""
        op, (_, data), where = self._sampled_rows(x, t, mu, rows)
        local = sp.csr_matrix((data, op.stencil[op.indices], op.indptr),
                              shape=(op.n_rows, self.n_dofs))
        return local[where]

    def _sampled_rows(self, x: np.ndarray, t: float, mu: np.ndarray, rows: Any
                      ) -> tuple[SampledOperator, tuple[np.ndarray, np.ndarray], np.ndarray]:
        """The sampled operator of the distinct ``rows``, its velocity and Jacobian values at
        ``x``, and where each requested row sits among its rows."""
        rows = self.check_rows(rows)
        uniq, where = np.unique(rows, return_inverse=True)
        op = self.sample(uniq)
        x = self.check_state(x, finite=False)
        f, data = op._evaluate(x[op.stencil], t, self.check_mu(mu))
        return op, (f, data), where

    def check_rows(self, rows: Any) -> np.ndarray:
        """Validate a set of row indices (integers in ``[0, N)``) and return it as int64."""
        arr = np.asarray(rows)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError("rows must be a one-dimensional array of integers")
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_dofs):
            raise InputError(f"rows must lie in [0, {self.n_dofs}), got {arr.min()}..{arr.max()}")
        return arr.astype(np.int64)

    # ---------------------------------------------------------------- compiled path
    def compiled_integrator(self):  # noqa: D401 - optional capability
        """Optional whole-trajectory kernel (see :func:`fom.solve`); ``None`` if absent."""
        return None
