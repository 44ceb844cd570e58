"""Where the sparse FOM solver's time goes, and what each of its improvements gives.

Runs the modified-Newton integrator of :mod:`fom.sparse_newton` on 2D viscous Burgers (mu = 1,
backward Euler, Newton ``||r|| <= 1e-8``) in five configurations side by side, each adding one
change to the previous one:

1. ``baseline``: COLAMD ordering, each step started from ``x^{n-1}``, refactor whenever an
   iteration contracts by less than 0.1;
2. ``+ ordering``: minimum degree on ``M^T + M`` (``MMD_AT_PLUS_A``);
3. ``+ predictor``: each step started from the quadratic extrapolation of the last states;
4. ``+ lookahead``: no refactorization when the next iterate converges at the observed rate
   anyway;
5. ``+ amortized`` (the default): refactor within a step only when an iteration contracts by
   less than 0.5, and otherwise once the steps since the last factorization have taken 50
   iterations more than a step with fresh factors (about the cost of one factorization).

For each it prints the wall time split into residual/Jacobian evaluations (numba kernel and
residual arithmetic), SuperLU factorizations, SuperLU solves and the rest (Python), the
counts, and the relative trajectory difference to the baseline (every run converges each step
to the same tolerance). Default: the whole trajectory at 60^2 and the first ``--steps`` steps
at 512^2 (``--grids`` to choose others).

    python benchmarks/fom_solver.py [--grids 60,512] [--steps 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from fom.burgers2d import Burgers2D
from fom.sparse_newton import integrate_sparse
from fom.steppers import BACKWARD_EULER
from fom.trajectory import TrajectoryStore

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fom_speed import cpu_model  # noqa: E402

BASE = {"lu_options": {"permc_spec": "COLAMD"}, "predictor": 0, "lookahead": False,
        "refactor_ratio": 0.1, "refactor_after": None}
MMD = {"permc_spec": "MMD_AT_PLUS_A"}
VARIANTS = {
    "baseline": BASE,
    "+ ordering": {**BASE, "lu_options": MMD},
    "+ predictor": {**BASE, "lu_options": MMD, "predictor": 2},
    "+ lookahead": {**BASE, "lu_options": MMD, "predictor": 2, "lookahead": True},
    "+ amortized": {**BASE, "lu_options": MMD, "predictor": 2, "lookahead": True,
                    "refactor_ratio": 0.5, "refactor_after": 50},
}


def run(prob: Burgers2D, n_steps: int, predictor: int, **kw
        ) -> tuple[TrajectoryStore, dict[str, float], float]:
    store = TrajectoryStore(prob.initial_state([1.0]), n_steps, 1)
    options = dataclasses.replace(prob.newton_defaults(), predictor=predictor)
    t0 = time.perf_counter()
    failed, stats = integrate_sparse(prob, np.array([1.0]), BACKWARD_EULER, prob.dt, options,
                                     store, **kw)
    wall = time.perf_counter() - t0
    if failed:
        raise SystemExit(f"FAIL: Newton did not converge at step {failed}")
    return store, stats.as_dict(), wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="60,512", help="comma-separated n (default 60,512)")
    parser.add_argument("--steps", type=int, default=20,
                        help="steps on grids above 60^2 (60^2 runs the whole trajectory)")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}")
    Burgers2D(n=8).velocity(np.zeros(72), 0.0, [1.0])  # load the cached kernel
    for n in (int(v) for v in args.grids.split(",")):
        prob = Burgers2D(n=n)
        n_steps = 1500 if n == 60 else args.steps
        print(f"\n{n}^2 (N = {prob.n_dofs}), {n_steps} steps")
        print(f"  {'variant':12s} {'wall':>8s} {'eval':>7s} {'factor':>7s} {'solve':>7s} "
              f"{'other':>6s}  {'fact':>4s} {'solves':>6s}  {'vs baseline':>11s}")
        ref = None
        for name, kw in VARIANTS.items():
            store, st, wall = run(prob, n_steps, **kw)
            if ref is None:
                ref = store.states.copy()
                diff = 0.0
            else:
                diff = float(np.linalg.norm(store.states - ref) / np.linalg.norm(ref))
            other = wall - st["evaluation_s"] - st["factorization_s"] - st["solve_s"]
            print(f"  {name:12s} {wall:7.2f}s {st['evaluation_s']:6.2f}s "
                  f"{st['factorization_s']:6.2f}s {st['solve_s']:6.2f}s {other:5.2f}s  "
                  f"{st['factorizations']:4d} {st['solves']:6d}  {diff:11.1e}", flush=True)
            del store


if __name__ == "__main__":
    main()
