"""Flame FOM speed: the 16 training trajectories of the 2D H2-air flame on the full grid.

Integrates the flame (64 x 32 cells, N = 8192, 600 backward-Euler steps) at the 16 parameters of
the training grid with the strong sparse solver (:mod:`fom.sparse_newton`: modified Newton with
reused SuperLU factors, the flame's SuperLU options and extrapolation predictor), and prints per
trajectory the wall and CPU time, Newton iterations per step, factorizations and solves, the
peak temperature and the smallest mass fraction of the run. The acceptance checks: all 16 in
under 120 s of wall time, and no mass fraction below -1e-10 at any step (exit status 1
otherwise). The machine is shared, so the CPU time of this process and the load average are
printed with it.

Side by side, on the two corner parameters of the box, the same solver with the generic
settings (COLAMD ordering with partial pivoting, the previous state as initial guess) gives the
speed ratio of the flame's settings; the states agree to the Newton tolerance.

    python benchmarks/flame_fom.py [--full] [--json PATH]
    python benchmarks/flame_fom.py --figure docs/figures/flame2d_fields.png

``--full`` compares the two settings on all 16 parameters. ``--figure PATH`` only draws the
four fields at the final time for the first test parameter (the figure of docs/problems.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fom
from fom.snapshots import flame2d_train_grid
from fom.solve import time_grid
from fom.sparse_newton import integrate_sparse
from fom.steppers import BACKWARD_EULER

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fom_speed import cpu_model  # noqa: E402

LIMIT_S = 120.0


def run(problem, mu, *, generic: bool = False) -> dict[str, float]:
    """One trajectory; ``generic`` = COLAMD with partial pivoting and no predictor."""
    opts = problem.newton_defaults()
    if generic:
        opts = dataclasses.replace(opts, predictor=0)
    dt, n_steps = time_grid(problem.dt, problem.t_final)
    w0, c0 = time.perf_counter(), time.process_time()
    states, iters, res, failed, stats = integrate_sparse(
        problem, np.asarray(mu, dtype=np.float64), BACKWARD_EULER, dt, n_steps, opts,
        lu_options={"permc_spec": "COLAMD"} if generic else None)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if failed:
        print(f"FAIL: Newton did not converge at step {failed} for mu = {list(mu)}",
              file=sys.stderr)
        sys.exit(1)
    fields = problem.as_fields(states)
    return {"wall_s": wall, "cpu_s": cpu, "iters_per_step": float(iters[1:].mean()),
            "max_iters": int(iters.max()), "factorizations": stats.factorizations,
            "solves": stats.solves, "final": states[-1], "max_residual": float(res.max()),
            "min_y": float(fields[:, 1:].min())}


def figure(path: Path) -> None:
    """The four fields at t = 0.06 s for the first test parameter, with colour bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fom.snapshots import flame2d_test_params

    problem = fom.Flame2D()
    mu = flame2d_test_params()[0]
    fields = problem.as_fields(fom.solve(problem, mu).states[-1])
    extent = (0.0, problem.length_x, 0.0, problem.length_y)
    labels = ("T (K)", "Y_H2", "Y_O2", "Y_H2O")
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 4.0), constrained_layout=True)
    for ax, field, label in zip(axes.ravel(), fields, labels, strict=True):
        im = ax.imshow(field, origin="lower", extent=extent, cmap="inferno", aspect="equal")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("x (cm)", fontsize=8)
        ax.set_ylabel("y (cm)", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, shrink=0.9).ax.tick_params(labelsize=7)
    fig.suptitle(f"flame2d at t = {problem.t_final:g} s, A = {mu[0]:.2e}, E = {mu[1]:.0f}",
                 fontsize=10)
    from rom.plots import save_figure
    save_figure(fig, path, dpi=80, bbox_inches="tight")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="compare the two solver settings on all 16 parameters")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--figure", type=Path, help="only draw the fields at the final time")
    args = parser.parse_args(argv)
    if args.figure:
        figure(args.figure)
        return {}

    problem = fom.Flame2D()
    mus = flame2d_train_grid()
    fom.solve(problem, mus[0], t_final=10 * problem.dt)  # warm-up: load the cached kernels
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), Python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"flame2d: {problem.nx} x {problem.ny} cells, N = {problem.n_dofs}, "
          f"{round(problem.t_final / problem.dt)} backward-Euler steps, dt = {problem.dt:g} s")
    print(f"{'A':>10} {'E':>8} {'wall s':>7} {'cpu s':>6} {'it/step':>7} {'max it':>6} "
          f"{'fact':>4} {'solves':>6} {'T max':>6} {'min Y':>9}")
    rows = []
    w0, c0 = time.perf_counter(), time.process_time()
    for mu in mus:
        r = run(problem, mu)
        rows.append(r)
        print(f"{mu[0]:10.4e} {mu[1]:8.1f} {r['wall_s']:7.2f} {r['cpu_s']:6.2f} "
              f"{r['iters_per_step']:7.2f} {r['max_iters']:6d} {r['factorizations']:4d} "
              f"{r['solves']:6d} {r['final'][:problem.n_cells].max():6.0f} "
              f"{r['min_y']:9.1e}", flush=True)
    total_wall, total_cpu = time.perf_counter() - w0, time.process_time() - c0
    print(f"16 training trajectories: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU "
          f"(load average now {os.getloadavg()[0]:.2f})")

    compare = range(len(mus)) if args.full else (0, len(mus) - 1)
    ratios = []
    print("side by side (same parameters, same run): generic settings vs the flame's")
    for i in compare:
        g = run(problem, mus[i], generic=True)
        d = run(problem, mus[i])
        diff = float(np.max(np.abs(g["final"] - d["final"])))
        ratios.append(g["cpu_s"] / d["cpu_s"])
        print(f"  mu = ({mus[i][0]:.4e}, {mus[i][1]:.1f}): generic {g['cpu_s']:.2f} s CPU "
              f"({g['solves']} solves), flame {d['cpu_s']:.2f} s CPU ({d['solves']} solves): "
              f"{ratios[-1]:.2f}x; final states differ by {diff:.1e}")
        if diff > 1e-6:
            print(f"FAIL: the two settings disagree by {diff:.3e}", file=sys.stderr)
            sys.exit(1)
    out = {"cpu": cpu_model(), "total_wall_s": total_wall, "total_cpu_s": total_cpu,
           "speedup_vs_generic": float(np.mean(ratios)),
           "trajectories": [{k: v for k, v in r.items() if k != "final"} for r in rows]}
    if args.json:
        from fom.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps(out, indent=2))
    min_y = min(r["min_y"] for r in rows)
    if min_y < -1e-10:
        print(f"FAIL: a mass fraction went negative ({min_y:.2e})", file=sys.stderr)
        sys.exit(1)
    if total_wall > LIMIT_S:
        print(f"FAIL: 16 trajectories took {total_wall:.1f} s > {LIMIT_S:.0f} s",
              file=sys.stderr)
        sys.exit(1)
    print(f"PASS: 16 trajectories in {total_wall:.1f} s < {LIMIT_S:.0f} s")
    return out


if __name__ == "__main__":
    main()
