"""Exceptions shared by the three packages.

Every error a user can cause with a file, a config value or a command-line argument is a
:class:`InputError`: its message is one line that names the file, field or value at fault.
The command-line program prints it as ``mrom: error: <message>`` and exits with status 2.
"""

from __future__ import annotations


class MromError(Exception):
    """Base class of all errors raised deliberately by manifold-rom."""


class InputError(MromError, ValueError):
    """Bad user input: a malformed config, a wrong shape, a non-finite value, a bad file."""


class ConvergenceError(MromError, RuntimeError):
    """A nonlinear solve (Newton or Gauss-Newton) did not converge.

    Attributes
    ----------
    step : int
        Index of the time step that failed (1-based: step ``n`` computes the state at ``t[n]``).
    time : float
        Time ``t[n]`` of the failed step.
    residual : float
        Norm of the residual at the last iterate.
    partial : object or None
        Whatever the driver had computed before the failure (a result object holding the steps
        that converged), so nothing is lost.
    """

    def __init__(self, message: str, *, step: int, time: float, residual: float,
                 partial: object | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.time = time
        self.residual = residual
        self.partial = partial
