"""Full-order models: PDE problems, implicit time steppers, Newton, snapshot generation.

Knows nothing of reduced-order models (docs/architecture.md).
"""

from .burgers1d import Burgers1D
from .burgers2d import Burgers2D
from .errors import ConvergenceError, InputError, MromError
from .flame2d import Flame2D
from .newton import NewtonOptions, newton_solve
from .problem import Problem
from .registry import PROBLEMS, get_problem
from .solve import FOMResult, solve
from .steppers import BACKWARD_EULER, BDF2, Scheme, get_scheme

__all__ = [
    "BACKWARD_EULER", "BDF2", "Burgers1D", "Burgers2D", "ConvergenceError", "FOMResult",
    "Flame2D", "InputError", "MromError", "NewtonOptions", "PROBLEMS", "Problem", "Scheme",
    "get_problem", "get_scheme", "newton_solve", "solve",
]
__version__ = "0.1.0"
