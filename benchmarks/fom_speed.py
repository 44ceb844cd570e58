"""FOM speed: the numba 1D Burgers FOM against a plain NumPy/SciPy implementation.

Both integrate the same scheme (Godunov, backward Euler, Newton) at the same parameters in one
run: the numba path is the compiled whole-trajectory kernel (``fom.solve``), the baseline is
:class:`fom.burgers1d_numpy.Burgers1DNumPy` (vectorised residual, ``scipy.sparse`` Jacobian,
``spsolve``) through the generic Newton loop. The script checks that they agree to 1e-10,
prints both wall times and the ratio, and the wall time to generate the paper's 80-parameter
training set (numba compilation excluded: it is cached, and warmed up first).

    python benchmarks/fom_speed.py [--full] [--json PATH]

Default: the two test parameters for the comparison. ``--full``: all 80 training parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fom
from fom.burgers1d_numpy import Burgers1DNumPy
from fom.snapshots import generate_snapshots, paper_test_params, paper_train_grid


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {platform.processor() or ''} " \
           f"{os.cpu_count()} cpus, Python {platform.python_version()}, numpy {np.__version__}"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="compare on all 80 parameters")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    fast, slow = fom.Burgers1D(), Burgers1DNumPy()
    mus = paper_train_grid() if args.full else paper_test_params()
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
    print(f"machine: {machine()}")
    print(f"1D Burgers, N = 256, 500 backward-Euler steps, {len(mus)} parameters")
    print(f"  numba FOM          {numba_s:9.3f} s")
    print(f"  NumPy/SciPy FOM    {numpy_s:9.3f} s")
    print(f"  speedup            {out['speedup']:9.1f} x   (max state difference {diff:.1e})")
    print(f"80-parameter training set (solve + HDF5 write): {train_set_s:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
