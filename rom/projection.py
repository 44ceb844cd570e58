"""Online ROM solvers: manifold LSPG and manifold Galerkin projection, one driver for both
trial manifolds (:mod:`rom.manifolds`).

Notation: the FOM ``dx/dt = f(x, t; mu)`` is integrated by an implicit linear multistep scheme
with the time-discrete residual of :mod:`fom.steppers`,

    r^n(x) = alpha_0 x + sum_{j>=1} alpha_j x^{n-j} - beta dt f(x, t^n; mu),              (1)

and the state is approximated on the trial manifold ``x~ = x_ref + g(z)``, ``J(z) = dg/dz``.

**Manifold LSPG** (Lee & Carlberg 2020, section 3.3, time-discrete residual minimization):

    z^n = argmin_y || r^n(x_ref + g(y)) ||_2                                               (2)

with ``x^{n-j}`` the ROM's own previous states. Solved by Gauss–Newton with the Jacobian
``A = (dr^n/dx) J(y) = alpha_0 J - beta dt (df/dx) J`` and the step ``min ||A d + r||`` (by
Householder QR, or the normal equations), globalized by an Armijo backtracking line search on
``||r||^2``. For the affine POD manifold this is exactly classical POD-LSPG: the Petrov–Galerkin
condition ``Psi^T r^n = 0`` with the test basis ``Psi = (dr^n/dx) Phi``.

**Manifold Galerkin** (section 3.2, time-continuous residual minimization): the ODE

    dz/dt = J(z)^+ f(x_ref + g(z), t; mu),                                                  (3)

is discretized by the same scheme, ``alpha_0 z^n + sum_j alpha_j z^{n-j} - beta dt
J(z^n)^+ f(x_ref + g(z^n), t^n) = 0``, and solved by Newton on these p equations with the
Jacobian ``alpha_0 I - beta dt J^+ (df/dx) J`` (the derivative of ``J^+`` is neglected: exact
for affine manifolds, an O(dt) quasi-Newton error otherwise, which only affects the convergence
rate, not the solution). ``J^+ v`` is always a least-squares solve with the QR factors of ``J``;
no pseudo-inverse is formed.

Per Gauss–Newton/Newton iterate the decoder and its Jacobian are evaluated exactly once: the
evaluation at an accepted point of the line search is reused for the next iterate, and the last
one of a step for the first iterate of the next step (the initial guess is ``z^{n-1}``).
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from fom.errors import ConvergenceError, InputError
from fom.problem import Problem
from fom.sampled import SampledOperator
from fom.solve import time_grid
from fom.steppers import Scheme, get_scheme, history_term, scheme_at_step

from . import kernels as K

METHODS = ("lspg", "galerkin")
#: The round-off level of a residual is taken as ``_NOISE * scale``, ``scale`` the size of the
#: terms that cancel in it (see :func:`rom.kernels.residual_into`).
_NOISE = 1e3 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class ROMOptions:
    """Tolerances of the per-step nonlinear solves.

    A step stops with success when any of these holds at iterate ``k`` (``r`` is the FOM
    residual (1) for LSPG and the latent residual of (3) for Galerkin, ``r_0`` its value at the
    initial guess ``z^{n-1}``, ``d`` the full Gauss–Newton/Newton step):

    - ``||r|| <= atol + rtol * ||r_0||``;
    - LSPG only: ``||Q^T r|| <= gtol * ||r||``, i.e. the residual is orthogonal to the range
      of ``A`` up to ``gtol`` (first-order optimality of (2), scale-free). When the minimum
      residual is not zero this, ``ftol`` or ``stol`` stops the iteration. Gauss–Newton then
      converges linearly (on 1D Burgers about 1e-3 per iteration); at ``gtol = 1e-6`` the
      remaining decrease of ``||r||`` is ~1e-12 relative and the latent state is accurate to
      ~1e-6 relative, far below any ROM's error, and a step takes 2 iterations instead of 3;
    - LSPG only: an accepted step reduced ``||r||`` by at most ``ftol * ||r||`` (as scipy's
      ``least_squares``). The Godunov flux is only piecewise smooth, and at a minimizer on a
      kink Gauss–Newton bounces with a step of ~1e-9 and no decrease; this stops it;
    - ``||d|| <= stol * (1 + ||z||)`` (the step is taken, then the solve stops);
    - round-off: ``||r||``, or for LSPG ``||Q^T r||``, is below ``1000 eps`` times the size of
      the terms that cancel in ``r`` (nothing more can be resolved in float64; the line search
      allows the same slack).

    For results exact to round-off set ``gtol = ftol = stol = 0`` and tiny ``atol, rtol``.

    Attributes
    ----------
    atol, rtol, gtol, ftol, stol : float
    max_iter : int
        Maximum iterations per time step; more is a :class:`fom.errors.ConvergenceError`.
    linear_solver : {"qr", "normal"}
        Householder QR of ``A`` (robust, default) or the normal equations with Cholesky.
    secant : bool
        Secant corrections that need no extra decoder evaluation: for LSPG the structured
        (Dennis–Gay–Welsch) approximation of the second-order term Gauss–Newton neglects, for
        Galerkin a Broyden correction of the neglected derivative of ``J^+``. Without them
        both iterations converge only linearly when the residual (LSPG) or the decoder's
        curvature (Galerkin) is large; the converged solutions are the same.
    line_search : bool
        Armijo backtracking on ``||r||^2`` (halving the step); without it full steps are taken.
    max_backtracks : int
        Halvings before the line search gives up (a convergence failure).
    armijo : float
        Sufficient-decrease constant ``c``: accept ``a`` if
        ``||r(z + a d)||^2 <= ||r||^2 - 2 c a pred``, ``pred = -d . A^T r`` the predicted
        decrease (``||A d||^2`` for the Gauss–Newton step).
    """

    atol: float = 1e-12
    rtol: float = 1e-10
    gtol: float = 1e-6
    ftol: float = 1e-12
    stol: float = 1e-10
    max_iter: int = 30
    linear_solver: str = "qr"
    secant: bool = True
    line_search: bool = True
    max_backtracks: int = 20
    armijo: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("atol", "rtol", "gtol", "ftol", "stol"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise InputError(f"ROM option {name} must be a number >= 0, got {v!r}")
        for name in ("max_iter", "max_backtracks"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                raise InputError(f"ROM option {name} must be an integer >= 0, got {v!r}")
        if self.linear_solver not in ("qr", "normal"):
            raise InputError(f"ROM option linear_solver must be 'qr' or 'normal', got "
                             f"{self.linear_solver!r}")
        if not 0 < self.armijo < 0.5:
            raise InputError(f"ROM option armijo must lie in (0, 0.5), got {self.armijo!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ROMResult:
    """Trajectory of a ROM (compare :class:`fom.FOMResult`).

    Attributes
    ----------
    mu : ndarray, shape (n_params,)
    t : ndarray, shape (n_t,)
    latent : ndarray, shape (n_t, p)
        Latent states ``z^n``; ``latent[0] = z0``.
    states : ndarray, shape (n_t, N), or None
        Decoded states ``x_ref + g(z^n)``; ``states[0] = x0(mu)`` to round-off. None for a
        hyper-reduced run without reconstruction.
    iterations : ndarray of int, shape (n_t,)
        Gauss–Newton (LSPG) or Newton (Galerkin) iterations per step (0 at ``t[0]``).
    residuals : ndarray, shape (n_t,)
        Final residual norm per step: ``||r^n||`` of the FOM residual (1) for LSPG, of the
        latent residual of (3) for Galerkin.
    backtracks : ndarray of int, shape (n_t,)
        Rejected line-search trial points per step.
    wall_s : float
        Wall time of the time loop (excluding the initial condition).
    cpu_s : float
        CPU time of this process in the time loop (on a shared machine: its own work).
    method : {"lspg", "galerkin"}
    p : int
    manifold : dict
        Description of the trial manifold (kind "pod" or "decoder", p, ...).
    scheme : str
    dt : float
    x_ref : ndarray, shape (N,)
    decoder_calls : int
        Evaluations of ``decode_with_jacobian`` (one per iterate, plus one at ``z0``).
    options : dict
    """

    mu: np.ndarray
    t: np.ndarray
    latent: np.ndarray
    states: np.ndarray | None
    iterations: np.ndarray
    residuals: np.ndarray
    backtracks: np.ndarray
    wall_s: float
    method: str
    p: int
    manifold: dict[str, Any] = field(default_factory=dict)
    scheme: str = "backward_euler"
    dt: float = 0.0
    x_ref: np.ndarray | None = None
    decoder_calls: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0

    @property
    def n_steps(self) -> int:
        """Number of completed time steps (``len(t) - 1``)."""
        return len(self.t) - 1

    def truncated(self, n_t: int) -> ROMResult:
        """The first ``n_t`` time points (what a failed run keeps)."""
        return self.at_steps(np.arange(n_t))

    def at_steps(self, steps: np.ndarray) -> ROMResult:
        """The time points ``steps`` (indices into :attr:`t`) among those computed, e.g. the
        stored steps of a snapshot file written with ``store_every``."""
        steps = np.asarray(steps, dtype=np.int64)
        k = steps[steps < len(self.t)]
        return ROMResult(self.mu, self.t[k], self.latent[k],
                         None if self.states is None else self.states[k],
                         self.iterations[k], self.residuals[k], self.backtracks[k], self.wall_s,
                         self.method, self.p, self.manifold, self.scheme, self.dt, self.x_ref,
                         self.decoder_calls, self.options, self.cpu_s)


# ----------------------------------------------------------------------------- FOM terms


class _Velocity:
    """``f`` and products ``shift * B0 + scale * (df/dx) B`` at the last evaluated state.

    Three sources of ``f`` and ``df/dx``, all giving the numbers of
    :func:`fom.steppers.time_residual` / :func:`fom.steppers.time_jacobian` (tested):

    - a sampled operator (:class:`fom.sampled.SampledOperator`, hyper-reduction): ``f`` and
      ``df/dx`` on the sample rows, from the state on their stencil only;
    - the problem's fused kernel when it declares a Jacobian structure
      (:meth:`fom.Problem.jacobian_structure`: velocity and CSR values in one call into reused
      buffers, e.g. :class:`fom.Burgers1D`);
    - else ``problem.velocity`` and the CSR ``problem.jacobian``.

    A numba CSR x dense product applies ``df/dx``.
    """

    def __init__(self, problem: Problem, mu: np.ndarray, jacobian: str = "auto",
                 sample: SampledOperator | None = None) -> None:
        if jacobian not in ("auto", "csr", "fused"):
            raise InputError(f"jacobian must be auto, csr or fused, got {jacobian!r}")
        self.problem = problem
        self.mu = mu
        self.sample = sample
        if sample is not None:
            self.fused = True
            self.indptr, self.indices = sample.indptr, sample.indices
            self.f = np.empty(sample.n_rows)
            self.data = np.empty(sample.nnz)
            return
        structure = problem.jacobian_structure() if jacobian != "csr" else None
        if jacobian == "fused" and structure is None:
            raise InputError(f"problem {problem.name} has no fused velocity/Jacobian kernel")
        self.fused = structure is not None
        self.f = np.empty(problem.n_dofs)
        if structure is not None:
            self.indptr, self.indices = structure
            self.data = np.empty(self.indices.shape[0])

    def evaluate(self, x: np.ndarray, t: float) -> np.ndarray:
        """Evaluate ``f`` and ``df/dx`` at ``x`` (for a sample: ``x`` on its stencil); returns
        ``f`` (a reused buffer; for a sample, on its rows)."""
        if self.sample is not None:
            self.sample.velocity_jacobian_into(x, t, self.mu, self.f, self.data)
        elif self.fused:
            self.problem.velocity_jacobian_into(x, t, self.mu, self.f, self.data)
        else:
            self.f[:] = self.problem.velocity(x, t, self.mu)
            jac = self.problem.jacobian(x, t, self.mu)
            if not sp.isspmatrix_csr(jac) and not isinstance(jac, sp.csr_array):
                jac = sp.csr_matrix(jac)
            self.indptr, self.indices = jac.indptr, jac.indices
            self.data = np.asarray(jac.data, dtype=np.float64)
        return self.f

    def times(self, b: np.ndarray, scale: float, shift: float, b0: np.ndarray,
              out: np.ndarray) -> None:
        """``out = shift * b0 + scale * (df/dx) b``."""
        K.csr_matmat_into(self.indptr, self.indices, self.data, b, scale, shift, b0, out)


# ----------------------------------------------------------------------------- driver


def _check_inputs(problem: Problem, manifold: Any, method: str) -> None:
    if method not in METHODS:
        raise InputError(f"unknown ROM method {method!r}; choose lspg or galerkin")
    for name in ("p", "n_dofs", "decode_with_jacobian", "initial_condition"):
        if not hasattr(manifold, name):
            raise InputError(f"trial manifold {type(manifold).__name__} lacks '{name}'")
    if manifold.n_dofs != problem.n_dofs:
        raise InputError(f"trial manifold has N = {manifold.n_dofs} but problem {problem.name} "
                         f"has N = {problem.n_dofs}")


def _describe(manifold: Any) -> dict[str, Any]:
    if hasattr(manifold, "describe"):
        return dict(manifold.describe())
    return {"kind": str(getattr(manifold, "kind", type(manifold).__name__)), "p": manifold.p}


def solve_rom(problem: Problem, manifold: Any, mu: Any, method: str = "lspg", *,
              scheme: str | Scheme = "backward_euler", dt: float | None = None,
              t_final: float | None = None, options: ROMOptions | None = None,
              jacobian: str = "auto", sample_mesh: Any = None,
              reconstruct: bool = True) -> ROMResult:
    """Integrate a projection ROM from ``x0(mu)``: manifold LSPG (2) or Galerkin (3).

    Parameters
    ----------
    problem : fom.Problem
    manifold : AffineManifold, DecoderManifold or any object with their interface
    mu : array_like, shape (n_params,)
    method : {"lspg", "galerkin"}
    scheme : {"backward_euler", "bdf2"}
        The FOM's scheme (BDF2 starts with one backward-Euler step, as in :mod:`fom`).
    dt, t_final : float, optional
        Default to the problem's.
    options : ROMOptions, optional
    jacobian : {"auto", "csr", "fused"}
        How ``df/dx`` is applied (see :class:`_Velocity`); all give the same result.
    sample_mesh : SampleMesh, optional
        Hyper-reduction (LSPG only): minimize the residual (1) on the sample mesh's rows
        only (collocation, or gappy LSPG), ``z^n = argmin_y ||P r^n(x_ref + g(y))||`` with
        ``P`` the selection of the rows; with a residual basis ``Phi_r`` on the mesh (GNAT,
        ``sample_mesh.weights``) the norm is ``||(P Phi_r)^+ P r^n||``. The residual and its
        Jacobian come from the problem's sampled operator and the decoder's rows on the
        stencil (:meth:`fom.Problem.sample`, ``manifold.decode_rows``): nothing of size N is
        read, written or allocated in the time loop.
    reconstruct : bool
        Hyper-reduction only: decode the full states after the time loop (for errors and
        figures); without it ``states`` is None.

    Returns
    -------
    ROMResult

    Raises
    ------
    InputError
        Bad ``mu``, ``dt``, ``t_final``, scheme, method, a manifold of the wrong size or a
        sample mesh of another problem.
    fom.errors.ConvergenceError
        If a step does not converge; the message names the step, time and residual, and
        ``err.partial`` is the :class:`ROMResult` of the steps computed before it.
    """
    _check_inputs(problem, manifold, method)
    if sample_mesh is not None and method != "lspg":
        raise InputError("hyper-reduction (a sample mesh) is implemented for LSPG only")
    if hasattr(sample_mesh, "n_dofs"):  # a SampleMesh: made for this problem?
        from .sample_mesh import check_fits

        check_fits(sample_mesh, problem)
    mu = problem.check_mu(mu)
    dt, n_steps = time_grid(problem.dt if dt is None else dt,
                            problem.t_final if t_final is None else t_final)
    sch = get_scheme(scheme)
    opts = options or ROMOptions()
    n, p = problem.n_dofs, int(manifold.p)
    t = dt * np.arange(n_steps + 1)

    # offline: the initial condition (full size), then the sample mesh's part of it
    x0 = problem.initial_state(mu)
    x_ref, z0 = manifold.initial_condition(x0)
    x_ref = np.ascontiguousarray(x_ref, dtype=np.float64)
    z0 = np.array(z0, dtype=np.float64).reshape(p)
    hyper = sample_mesh is not None
    latent = np.zeros((n_steps + 1, p))
    states = np.zeros((n_steps + 1, n)) if not hyper or reconstruct else None
    iters = np.zeros(n_steps + 1, dtype=np.int64)
    resid = np.zeros(n_steps + 1)
    backs = np.zeros(n_steps + 1, dtype=np.int64)
    info = _describe(manifold)
    if hyper:
        info = {**info, **sample_mesh.describe()}
    result = ROMResult(mu, t, latent, states, iters, resid, backs, 0.0, method, p, info,
                       sch.name, dt, x_ref, 0, opts.to_dict())
    if hyper:
        sample = problem.sample(sample_mesh.rows)
        decoder = _RowDecoder(manifold, sample.stencil)
        x_loop = np.ascontiguousarray(x_ref[sample.stencil])
        track = np.zeros((n_steps + 1, sample.n_rows))  # the states on the sampled rows
        weights = getattr(sample_mesh, "weights", None)
    else:
        sample, decoder, x_loop, track, weights = None, manifold, x_ref, states, None

    g, jac = decoder.decode_with_jacobian(z0)
    result.decoder_calls = 1
    latent[0] = z0
    if hyper:
        if states is not None:
            states[0] = x_ref + np.asarray(manifold.decode(z0), dtype=np.float64)
        track[0] = x_loop[sample.row_pos] + np.asarray(g)[sample.row_pos]
    else:
        K.axpy_state_into(x_ref, np.asarray(g, dtype=np.float64), states[0])

    step_solver = _LSPGStep if method == "lspg" else _GalerkinStep
    solver = step_solver(problem, decoder, mu, x_loop, opts, jacobian, sample, weights)
    solver.set_point(z0, g, jac)
    start, cpu = _time.perf_counter(), _time.process_time()
    for k in range(1, n_steps + 1):
        s = scheme_at_step(sch, k)
        hist_src = track if method == "lspg" else latent
        hist = history_term(s, [hist_src[k - j] for j in range(1, s.n_history + 1)])
        ok, reason = solver.solve_step(s, hist, float(t[k]), dt)
        iters[k], resid[k], backs[k] = solver.iterations, solver.rnorm, solver.backtracks
        result.decoder_calls += solver.calls
        if not ok:
            result.wall_s = _time.perf_counter() - start
            result.cpu_s = _time.process_time() - cpu
            partial = _finish(result.truncated(k), manifold, hyper)
            label = f"{info.get('kind', '?')}-{method}, p = {p}"
            raise ConvergenceError(
                f"ROM ({label}) did not converge at step {k} (t = {t[k]:.6g}) for mu = "
                f"{mu.tolist()}: residual {solver.rnorm:.3e} after {solver.iterations} "
                f"iterations ({reason}); steps 0..{k - 1} are kept in err.partial",
                step=k, time=float(t[k]), residual=float(solver.rnorm), partial=partial)
        latent[k] = solver.z
        track[k] = solver.x_rows if hyper else solver.x
    result.wall_s = _time.perf_counter() - start
    result.cpu_s = _time.process_time() - cpu
    return _finish(result, manifold, hyper)


def _finish(result: ROMResult, manifold: Any, hyper: bool) -> ROMResult:
    """After a hyper-reduced run: the full states ``x_ref + g(z^n)`` (if asked for)."""
    if hyper and result.states is not None:
        for k in range(1, result.latent.shape[0]):
            result.states[k] = result.x_ref + np.asarray(manifold.decode(result.latent[k]),
                                                         dtype=np.float64)
    return result


class _RowDecoder:
    """The trial manifold on the rows ``stencil`` only: ``decode_with_jacobian(z)`` returns
    ``g(z)[stencil]`` and ``J(z)[stencil]`` (``manifold.decode_rows``)."""

    def __init__(self, manifold: Any, stencil: np.ndarray) -> None:
        self.manifold, self.stencil = manifold, stencil
        self.p = int(manifold.p)
        self.affine = bool(getattr(manifold, "affine", False))

    def decode_with_jacobian(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.manifold.decode_rows(z, self.stencil)


class _StepBase:
    """Shared state of the step solvers: the current point and its decoder evaluation."""

    def __init__(self, problem: Problem, manifold: Any, mu: np.ndarray, x_ref: np.ndarray,
                 opts: ROMOptions, jacobian: str, sample: SampledOperator | None = None,
                 weights: np.ndarray | None = None) -> None:
        self.manifold = manifold
        #: the decoder is curved (its Jacobian varies); False for the affine POD manifold
        self.curved = not bool(getattr(manifold, "affine", False))
        self.opts = opts
        self.x_ref = x_ref  # on the sample mesh's stencil when hyper-reduced
        self.vel = _Velocity(problem, mu, jacobian, sample)
        n, p = x_ref.shape[0], int(manifold.p)
        self.n, self.p = n, p
        self.x = np.empty(n)
        #: where the residual rows sit in ``x`` (None: every row, ``x`` itself)
        self.row_pos = None if sample is None else sample.row_pos
        self.n_rows = n if sample is None else sample.n_rows
        if self.row_pos is not None:
            self.x_rows, self.jac_rows = np.empty(self.n_rows), np.empty((self.n_rows, p))
        self.weights = weights
        self.iterations = 0
        self.backtracks = 0
        self.calls = 0
        self.rnorm = 0.0

    def set_point(self, z: np.ndarray, g: np.ndarray, jac: np.ndarray) -> None:
        self.z = np.array(z, dtype=np.float64)
        self.jac = np.ascontiguousarray(jac, dtype=np.float64)
        if self.row_pos is None:
            K.axpy_state_into(self.x_ref, np.asarray(g, dtype=np.float64), self.x)
            self.x_rows, self.jac_rows = self.x, self.jac
        else:
            K.point_into(self.x_ref, np.asarray(g, dtype=np.float64), self.jac, self.row_pos,
                         self.x, self.x_rows, self.jac_rows)

    def decode_at(self, z: np.ndarray) -> None:
        g, jac = self.manifold.decode_with_jacobian(z)
        self.calls += 1
        self.set_point(z, g, jac)

    def solve_step(self, s: Scheme, hist: np.ndarray, t: float, dt: float) -> tuple[bool, str]:
        """Newton-type iteration for one step from the current point; sets ``z, x``.

        Returns ``(converged, reason for failure)``; ``iterations``, ``backtracks``,
        ``calls`` (decoder evaluations) and ``rnorm`` describe the step afterwards.
        """
        o = self.opts
        self.iterations = self.backtracks = self.calls = 0
        self.alpha0, self.bdt, self.hist, self.t = s.alpha[0], s.beta * dt, hist, t
        self.begin_step()
        rnorm = self.evaluate()
        r0 = rnorm
        while True:
            self.rnorm = rnorm
            noise = _NOISE * self.scale
            if not math.isfinite(rnorm):
                return False, "non-finite residual"
            if rnorm <= o.atol + o.rtol * r0 or rnorm <= noise:
                return True, ""
            if self.iterations >= o.max_iter:
                return False, f"max_iter = {o.max_iter} reached"
            step, pred = self.direction()  # pred: predicted decrease of ||r||^2 / 2
            if step is None:
                return False, "singular Gauss-Newton/Newton matrix"
            if self.stationary(rnorm, noise):
                return True, ""
            z_old, alpha, tries = self.z, 1.0, 0
            while True:
                self.decode_at(z_old + alpha * step)
                rtrial = self.evaluate()
                # Armijo test on ||r||^2, allowing for the round-off in ||r||
                if not o.line_search or (
                        math.isfinite(rtrial) and rtrial * rtrial
                        <= rnorm * rnorm + 2.0 * rnorm * noise
                        - 2.0 * o.armijo * alpha * pred):
                    break
                tries += 1
                self.backtracks += 1
                if tries > o.max_backtracks:
                    self.rnorm = rtrial
                    return False, "line search found no sufficient decrease"
                alpha *= 0.5
            self.iterations += 1
            r_old, rnorm = rnorm, rtrial
            if (np.linalg.norm(step) <= o.stol * (1.0 + np.linalg.norm(self.z))
                    or self.stalled(r_old, rnorm)):
                self.rnorm = rnorm
                return (True, "") if math.isfinite(rnorm) else (False, "non-finite residual")


class _LSPGStep(_StepBase):
    """One LSPG step (2): Gauss–Newton on ``||r^n(x_ref + g(z))||``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        m, p = self.n_rows, self.p
        self.r_rows = np.empty((m, 1))
        self.a_rows = np.empty((m, p))
        if self.weights is not None:  # GNAT: the residual's coordinates in its basis
            self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
            m = self.weights.shape[0]
            self.r, self.a = np.empty((m, 1)), np.empty((m, p))
            self.weight_norm = float(np.linalg.norm(self.weights, 2))
        else:
            self.r, self.a = self.r_rows, self.a_rows
        self.wa, self.wb = np.empty((m, p)), np.empty((m, 1))
        self.d = np.empty((p, 1))
        self.ad = np.empty(m)
        self.gram = np.empty((p, p))
        self.gn_step, self.qn_step, self.grad = np.empty(p), np.empty(p), np.empty(p)
        # the previous iterate of the step (secant update): z, A and A^T r there
        self.z_old, self.a_old, self.grad_old = np.empty(p), np.empty((m, p)), np.empty(p)
        self.use_qr = self.opts.linear_solver == "qr"

    def evaluate(self) -> float:
        """Residual (1) and the Gauss–Newton Jacobian ``A`` at the current point (on the
        sample rows when hyper-reduced; in the residual basis for GNAT)."""
        v = self.vel
        f = v.evaluate(self.x, self.t)
        rn, self.scale = K.lspg_system_into(self.x_rows, self.hist, f, self.alpha0, self.bdt,
                                            v.indptr, v.indices, v.data, self.jac,
                                            self.jac_rows, self.r_rows[:, 0], self.a_rows)
        if self.weights is not None:
            np.dot(self.weights, self.r_rows, out=self.r)
            np.dot(self.weights, self.a_rows, out=self.a)
            self.scale *= self.weight_norm
            rn = float(np.linalg.norm(self.r))
        return rn

    def begin_step(self) -> None:
        self.secant = np.zeros((self.p, self.p))
        self.has_prev = False

    def direction(self) -> tuple[np.ndarray | None, float]:
        """The Gauss–Newton step (sets ``measure = ||Q^T r||``), or with ``options.secant``
        the structured quasi-Newton step ``(A^T A + S) d = -A^T r``.

        ``S`` approximates the second-order term ``sum_i r_i Hess(r_i)`` that Gauss–Newton
        neglects, by the Dennis–Gay–Welsch secant update (NL2SOL; Dennis & Schnabel 1983,
        section 10.3; :func:`rom.kernels.secant_update`) from quantities already computed (no
        extra decoder evaluation). Where the minimum residual is large (a trajectory the
        manifold fits poorly) Gauss–Newton converges only linearly, at a rate near 1; the
        correction makes it superlinear. The Gauss–Newton step is used whenever ``A^T A + S``
        is not positive definite or its step is not a descent direction.
        """
        c, self.measure = K.gauss_newton_into(self.a, self.r, self.wa, self.wb, self.d,
                                              self.gram, self.use_qr, self.gn_step, self.ad,
                                              self.grad)
        step = self.gn_step
        if not c > 0.0:  # numerically rank-deficient: minimum-norm least-squares step (SVD)
            step = -np.linalg.lstsq(self.a, self.r[:, 0], rcond=None)[0]
            if not np.all(np.isfinite(step)):
                return None, 0.0
            np.dot(self.a, step, out=self.ad)
            self.measure = float(np.linalg.norm(self.ad))
        pred = self.measure * self.measure
        if not self.opts.secant:
            return step, pred
        if self.has_prev:
            K.secant_update(self.secant, self.z, self.z_old, self.a_old, self.r, self.grad,
                            self.grad_old)
        self.z_old[:], self.a_old[:], self.grad_old[:] = self.z, self.a, self.grad
        self.has_prev = True
        if self.iterations == 0:
            return step, pred
        qn_pred = K.secant_step_into(self.a, self.secant, self.grad, self.qn_step)
        return (self.qn_step, qn_pred) if qn_pred > 0.0 else (step, pred)

    def stationary(self, rnorm: float, noise: float) -> bool:
        """Relative gradient ``||Q^T r|| / ||r||`` (of the Gauss–Newton model) below ``gtol``,
        or ``||Q^T r||`` below the residual's round-off."""
        return self.measure <= self.opts.gtol * rnorm or self.measure <= noise

    def stalled(self, r_old: float, r_new: float) -> bool:
        """The accepted step reduced ``||r||`` by at most ``ftol`` relative (scipy's ftol)."""
        return r_old - r_new <= self.opts.ftol * r_old


class _GalerkinStep(_StepBase):
    """One Galerkin step of (3): Newton on ``alpha_0 z + h - beta dt J^+ f = 0``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        n, p = self.n, self.p
        if self.row_pos is not None:
            raise InputError("hyper-reduced Galerkin is not implemented")
        self.b = np.empty((n, p + 1))  # [f, (df/dx) J]
        self.wa, self.wb = np.empty((n, p)), np.empty((n, p + 1))
        self.sol = np.empty((p, p + 1))  # J^+ [f, (df/dx) J]
        self.rhat = np.empty(p)
        self.m = np.empty((p, p))
        self.zeros = np.zeros((n, p))

    def evaluate(self) -> float:
        f = self.vel.evaluate(self.x, self.t)
        self.b[:, 0] = f
        self.vel.times(self.jac, 1.0, 0.0, self.zeros, self.b[:, 1:])
        if K.householder_lstsq(self.jac, self.b, self.wa, self.wb, self.sol) <= 0.0:
            self.sol[:] = np.linalg.lstsq(self.jac, self.b, rcond=None)[0]
        rn, self.scale = K.residual_into(self.z, self.hist, self.sol[:, 0], self.alpha0,
                                         self.bdt, self.rhat)
        self.m[:] = -self.bdt * self.sol[:, 1:]
        self.m[np.diag_indices(self.p)] += self.alpha0
        return rn

    def begin_step(self) -> None:
        if not hasattr(self, "correction"):  # kept from step to step: J varies smoothly
            self.correction = np.zeros((self.p, self.p))
        self.prev: tuple[np.ndarray, np.ndarray] | None = None

    def direction(self) -> tuple[np.ndarray | None, float]:
        """Newton step with ``M = alpha_0 I - beta dt J^+ (df/dx) J (+ C)``.

        With ``options.secant``, ``C`` corrects the neglected derivative of ``J^+`` by Broyden
        updates ``C += (dr - (M + C) s) s^T / s^T s`` after each step ``s`` (the secant
        condition with the observed change ``dr`` of the latent residual), so the iteration
        converges superlinearly on a curved decoder instead of linearly (on the trained
        Burgers decoder: at a rate of ~0.7 per iteration, 30 iterations not enough), without
        extra decoder evaluations. ``C`` is carried from one time step to the next. For the
        affine manifold ``M`` is exact and ``C = 0`` (Newton stays quadratic).
        """
        if self.opts.secant and self.curved and self.prev is not None:
            sv = self.z - self.prev[0]
            ss = float(sv @ sv)
            if ss > 0:
                dr = self.rhat - self.prev[1]
                self.correction += np.outer(dr - (self.m + self.correction) @ sv, sv) / ss
        if self.opts.secant:
            self.prev = (self.z.copy(), self.rhat.copy())
        try:
            step = -np.linalg.solve(self.m + self.correction, self.rhat)
        except np.linalg.LinAlgError:
            return None, 0.0
        if not np.all(np.isfinite(step)):
            return None, 0.0
        return step, float(self.rhat @ self.rhat)  # Newton: ||M d||^2 = ||r^||^2

    def stationary(self, rnorm: float, noise: float) -> bool:
        return False

    def stalled(self, r_old: float, r_new: float) -> bool:
        return False  # a square system: its residual goes to zero (atol/rtol/round-off)



def lspg_residual_jacobian(problem: Problem, manifold: Any, mu: Any, z: np.ndarray,
                           x_ref: np.ndarray, history: list[np.ndarray], t: float, dt: float,
                           scheme: str | Scheme = "backward_euler",
                           jacobian: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The LSPG residual ``r^n(x_ref + g(z))`` (1) and its Gauss–Newton Jacobian ``A``.

    Evaluated by the same code as :func:`solve_rom` (for tests and diagnostics).
    ``history`` holds the previous states ``[x^{n-1}, x^{n-2}, ...]`` the scheme needs.
    """
    mu = problem.check_mu(mu)
    sch = get_scheme(scheme)
    step = _LSPGStep(problem, manifold, mu, np.ascontiguousarray(x_ref, dtype=np.float64),
                     ROMOptions(), jacobian)
    step.decode_at(np.asarray(z, dtype=np.float64))
    step.alpha0, step.bdt, step.t = sch.alpha[0], sch.beta * dt, t
    step.hist = history_term(sch, history)
    step.evaluate()
    return step.r[:, 0].copy(), step.a.copy()
