"""FOM speed: the numba FOMs against plain NumPy/SciPy implementations of the same schemes.

**1D Burgers.** Both integrate the same scheme (Godunov, backward Euler, Newton) at the same
parameters in one run: the numba path is the compiled whole-trajectory kernel (``fom.solve``),
the baseline is :class:`fom.burgers1d_numpy.Burgers1DNumPy` (vectorised residual,
``scipy.sparse`` Jacobian, ``spsolve``) through the generic Newton loop. The script checks that
they agree to 1e-10, prints both wall times and the ratio, and the wall time to generate the
paper's 80-parameter training set (numba compilation excluded: it is cached, and warmed up
first).

**2D viscous Burgers** (``docs/problems.md``). The numba FOM (``fom.solve``, the sparse modified
Newton over the numba kernels) against :class:`fom.burgers2d_numpy.Burgers2DNumPy` (NumPy
velocity, ``scipy.sparse`` Jacobian, plain Newton with ``spsolve`` at every iteration, as
NM-ROM's FOM) at mu = 1.0:

- 60^2: whole trajectories (1500 steps) of both, their ratio, and their agreement (relative
  trajectory error; acceptance 1e-7: the Newton tolerance is 1e-8 on the residual norm);
- 128^2: the first ``--steps-128`` steps of both (whole numba trajectory with ``--full``),
  the ratio of the times per step;
- time per step of the numba FOM at 60^2, 128^2, 256^2 and 512^2 (``--steps`` steps each; whole
  trajectories with ``--full``), with its factorizations and linear solves.

Acceptance (exit status 1 if one fails): numba >= 10x faster than NumPy/SciPy at 60^2 in wall
time and in CPU time (on a shared machine the CPU time of this process measures its own work),
and the two trajectories agree to 1e-7.

    python benchmarks/fom_speed.py [--problem all|burgers1d|burgers2d] [--full] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fom
from fom.burgers1d_numpy import Burgers1DNumPy
from fom.burgers2d import Burgers2D
from fom.burgers2d_numpy import Burgers2DNumPy
from fom.snapshots import generate_snapshots, paper_test_params, paper_train_grid

MU_2D = [1.0]
GRIDS_2D = (60, 128, 256, 512)


def describe_cpu(lscpu: str, fallback: str = "unknown CPU") -> str:
    """The CPU of ``lscpu``'s output: its model name with the CPU family and model and its
    widest vector instructions, e.g. ``AMD EPYC (family 25, model 1; AVX2)``. The family and
    model tell apart CPUs that share a name (AMD EPYC Zen 2, 3 and 4), and the vector width
    is what set the measured machines apart in training speed: on the same 2-core VM size,
    an epoch took about 2x as long on the AVX2 CPUs as on the AVX-512 ones with oneDNN's
    kernels on both, 3x with TensorFlow's default kernels (README, "Training time")."""
    info = {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in lscpu.splitlines()) if v.strip()}
    name = info.get("Model name") or fallback
    flags = set(info.get("Flags", "").split())
    isa = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags
           else "AVX" if "avx" in flags else "")
    ids = ", ".join(f"{label} {info[key]}" for label, key in (("family", "CPU family"),
                                                              ("model", "Model"))
                    if info.get(key, "").isdigit())
    what = "; ".join(x for x in (ids, isa) if x)
    return f"{name} ({what})" if what else name


def cpu_model() -> str:
    """This machine's CPU as :func:`describe_cpu` names it (the CPU to quote with any
    timing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    return describe_cpu(out, platform.processor() or "unknown CPU")


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {cpu_model()}, {os.cpu_count()} cpus, " \
           f"Python {platform.python_version()}, numpy {np.__version__}"


def bench_1d(full: bool) -> dict[str, float]:
    """The 1D Burgers comparison (module docstring); exits on disagreement."""
    fast, slow = fom.Burgers1D(), Burgers1DNumPy()
    mus = paper_train_grid() if full else paper_test_params()
    fom.solve(fast, mus[0])  # warm-up: load the cached numba kernels

    t0 = time.perf_counter()
    fast_runs = [fom.solve(fast, mu) for mu in mus]
    numba_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow_runs = [fom.solve(slow, mu) for mu in mus]
    numpy_s = time.perf_counter() - t0
    diff = max(float(np.max(np.abs(a.states - b.states))) for a, b in zip(fast_runs, slow_runs,
                                                                         strict=True))
    if diff > 1e-10:
        print(f"FAIL: numba and NumPy/SciPy FOMs differ by {diff:.3e} > 1e-10", file=sys.stderr)
        sys.exit(1)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_snapshots(fast, paper_train_grid(), Path(tmp) / "train.h5", progress=False)
        train_set_s = time.perf_counter() - t0

    out = {"numba_s": numba_s, "numpy_s": numpy_s, "speedup": numpy_s / numba_s,
           "train_set_s": train_set_s}
    print(f"1D Burgers, N = 256, 500 backward-Euler steps, {len(mus)} parameters")
    print(f"  numba FOM          {numba_s:9.3f} s")
    print(f"  NumPy/SciPy FOM    {numpy_s:9.3f} s")
    print(f"  speedup            {out['speedup']:9.1f} x   (max state difference {diff:.1e})")
    print(f"80-parameter training set (solve + HDF5 write): {train_set_s:.2f} s", flush=True)
    return out


def run_2d(cls: type, n: int, n_steps: int | None) -> tuple[fom.FOMResult, float]:
    """One 2D trajectory at mu = 1 (``n_steps`` steps, or all); returns it and the setup time.

    The result's ``stats["cpu_s"]`` is the CPU time of this process during the solve: on a
    shared machine it measures the work where the wall time also measures the neighbours.
    """
    t0 = time.perf_counter()
    prob = cls(n=n)
    setup = time.perf_counter() - t0
    t_final = None if n_steps is None else n_steps * prob.dt
    method = "generic" if cls is Burgers2DNumPy else "auto"
    cpu = time.process_time()
    res = fom.solve(prob, MU_2D, t_final=t_final, method=method)
    res.stats["cpu_s"] = time.process_time() - cpu
    return res, setup


def per_step(res: fom.FOMResult) -> float:
    return res.wall_s / res.solver["n_steps"]


def work(res: fom.FOMResult) -> str:
    st = res.stats
    its = int(np.sum(res.iterations))
    if "factorizations" in st:
        return f"{st['factorizations']} factorizations, {st['solves']} solves"
    return f"{its} Newton iterations (a factorization each)"


def bench_2d(full: bool, steps: int, steps_128: int) -> tuple[dict[str, object], list[str]]:
    """The 2D Burgers comparison and scaling (module docstring); returns figures, failures."""
    fom.solve(Burgers2D(n=8), MU_2D, t_final=3 * 2.0 / 1500)  # warm-up: cached kernels
    failures: list[str] = []
    out: dict[str, object] = {}

    fast, _ = run_2d(Burgers2D, 60, None)
    slow, _ = run_2d(Burgers2DNumPy, 60, None)
    rel = float(np.linalg.norm(fast.states - slow.states) / np.linalg.norm(slow.states))
    step_rel = np.linalg.norm(fast.states - slow.states, axis=1) / np.maximum(
        np.linalg.norm(slow.states, axis=1), 1e-300)
    ratio60 = slow.wall_s / fast.wall_s
    cpu60 = slow.stats["cpu_s"] / fast.stats["cpu_s"]
    out["n60"] = {"numba_s": fast.wall_s, "numpy_s": slow.wall_s, "speedup": ratio60,
                  "numba_cpu_s": fast.stats["cpu_s"], "numpy_cpu_s": slow.stats["cpu_s"],
                  "speedup_cpu": cpu60,
                  "relative_difference": rel, "max_step_relative_difference":
                  float(step_rel.max()), "numba_work": fast.stats,
                  "numpy_newton_iterations": int(np.sum(slow.iterations))}
    print("2D viscous Burgers, mu = 1.0, backward Euler, dt = 2/1500, Newton ||r|| <= 1e-8")
    print(f"60^2 (N = {fast.states.shape[1]}), whole trajectories (1500 steps):")
    print(f"  numba FOM (sparse modified Newton)   {fast.wall_s:9.2f} s wall "
          f"{fast.stats['cpu_s']:9.2f} s CPU  ({work(fast)})")
    print(f"  NumPy/SciPy FOM (spsolve Newton)     {slow.wall_s:9.2f} s wall "
          f"{slow.stats['cpu_s']:9.2f} s CPU  ({work(slow)})")
    print(f"  speedup                              {ratio60:9.1f} x wall {cpu60:9.1f} x CPU  "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    print(f"  agreement: relative trajectory difference {rel:.2e} "
          f"(largest at one step {step_rel.max():.2e})", flush=True)
    if min(ratio60, cpu60) < 10:
        failures.append(f"numba FOM only {ratio60:.1f}x (wall) / {cpu60:.1f}x (CPU) faster "
                        f"than NumPy/SciPy at 60^2 (< 10x)")
    if not rel <= 1e-7:
        failures.append(f"numba and NumPy/SciPy FOMs differ by {rel:.2e} > 1e-7 at 60^2")

    numba_128, setup_128 = run_2d(Burgers2D, 128, None if full else steps_128)
    slow_128, _ = run_2d(Burgers2DNumPy, 128, steps_128)
    ratio128 = per_step(slow_128) / per_step(numba_128)
    cpu128 = (slow_128.stats["cpu_s"] / steps_128) / (numba_128.stats["cpu_s"]
                                                      / numba_128.solver["n_steps"])
    out["n128"] = {"numba_s_per_step": per_step(numba_128), "numba_steps":
                   numba_128.solver["n_steps"], "numpy_s_per_step": per_step(slow_128),
                   "numpy_steps": steps_128, "speedup_per_step": ratio128,
                   "speedup_per_step_cpu": cpu128}
    print(f"128^2 (N = {numba_128.states.shape[1]}), time per step:")
    print(f"  numba FOM        {per_step(numba_128):8.3f} s/step over "
          f"{numba_128.solver['n_steps']} steps ({work(numba_128)})")
    print(f"  NumPy/SciPy FOM  {per_step(slow_128):8.3f} s/step over the first {steps_128} "
          f"steps ({work(slow_128)})")
    print(f"  speedup          {ratio128:8.1f} x wall {cpu128:8.1f} x CPU", flush=True)

    print(f"numba FOM, time per step ({'whole trajectories' if full else f'{steps} steps'}; "
          f"the setup builds the neighbour tables and the CSR structure):")
    scaling = {}
    for n in GRIDS_2D:
        if n == 60 and full:
            res, setup = fast, 0.0
        else:
            res, setup = run_2d(Burgers2D, n, None if full else steps)
        scaling[n] = {"N": int(res.states.shape[1]), "steps": res.solver["n_steps"],
                      "s_per_step": per_step(res), "wall_s": res.wall_s, "setup_s": setup,
                      **res.stats}
        print(f"  {n:3d}^2  N = {res.states.shape[1]:7d}  {per_step(res):8.4f} s/step  "
              f"({res.wall_s:7.1f} s wall, {res.stats['cpu_s']:7.1f} s CPU, {work(res)}; "
              f"factorizations {res.stats['factorization_s']:.1f} s, solves "
              f"{res.stats['solve_s']:.1f} s; setup {setup:.1f} s)", flush=True)
        del res
    out["scaling"] = scaling
    return out, failures


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=("all", "burgers1d", "burgers2d"), default="all")
    parser.add_argument("--full", action="store_true",
                        help="1D: all 80 parameters; 2D: whole numba trajectories everywhere")
    parser.add_argument("--steps", type=int, default=30,
                        help="2D time-per-step runs: steps per grid (default 30)")
    parser.add_argument("--steps-128", type=int, default=20,
                        help="2D at 128^2: steps of the NumPy/SciPy FOM (default 20)")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}", flush=True)
    out: dict[str, object] = {"cpu": cpu_model()}
    failures: list[str] = []
    if args.problem in ("all", "burgers1d"):
        out["burgers1d"] = bench_1d(args.full)
    if args.problem in ("all", "burgers2d"):
        out["burgers2d"], failures = bench_2d(args.full, args.steps, args.steps_128)
    if args.json:
        from fom.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps(out, indent=2))
    for msg in failures:
        print(f"FAIL: {msg}", file=sys.stderr)
    if failures:
        sys.exit(1)
    if args.problem in ("all", "burgers2d"):
        print("PASS: numba >= 10x faster at 60^2 and the FOMs agree to 1e-7")
    return out


if __name__ == "__main__":
    main()
