"""Problems by name: ``get_problem("burgers1d", n_cells=256)``."""

from __future__ import annotations

import inspect
from typing import Any

from .burgers1d import Burgers1D
from .burgers2d import Burgers2D
from .errors import InputError
from .flame2d import Flame2D
from .problem import Problem

PROBLEMS: dict[str, type[Problem]] = {"burgers1d": Burgers1D, "burgers2d": Burgers2D,
                                     "flame2d": Flame2D}


def get_problem(name: str, **config: Any) -> Problem:
    """Build the problem registered as ``name`` with keyword ``config``.

    Raises
    ------
    InputError
        For an unknown name or an unknown/invalid config key.
    """
    try:
        cls = PROBLEMS[name]
    except KeyError:
        raise InputError(
            f"unknown problem {name!r}; available: {', '.join(sorted(PROBLEMS))}"
        ) from None
    known = [k for k in inspect.signature(cls).parameters if k != "self"]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise InputError(f"problem {name}: unknown option '{unknown[0]}' "
                         f"(known: name, {', '.join(known)})")
    return cls(**config)
