"""POD of a large snapshot set: the exact thin SVD against the Gram route for a few modes.

``rom.manifolds.pod(X, n_modes)`` computes the leading ``n_modes`` left singular vectors of a
large snapshot matrix through the Gram matrix of its smaller side (the method of snapshots)
instead of the full thin SVD, which computes every pair of singular vectors. Both run here
side by side on the same matrix; the script prints the wall times, their ratio, the machine,
and how far the Gram route's leading singular values and vectors are from the SVD's.

Default: a synthetic matrix of 3000 snapshots of 3364 values with a slowly decaying spectrum
(about a minute). ``--snapshots FILE``: the deviations ``x^n - x^0`` of a snapshot file (e.g.
2D Burgers' training file at 60^2, 6004 x 6728; ``--full`` makes that file with
``mrom snapshots`` first when it is missing).

Acceptance checks (exit status 1 if one fails): leading singular values within 1e-10
relative, leading vectors within 1e-8 (``|U_k^T U_ref| = I``), and the Gram route faster.

    python benchmarks/pod_speed.py [--modes K] [--snapshots FILE | --full]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fom_speed import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def synthetic(n_snap: int, n: int, seed: int = 0) -> np.ndarray:
    """Snapshots with singular values decaying from 1 to 1e-3 (a transport problem's
    slow decay), random singular vectors."""
    rng = np.random.default_rng(seed)
    r = min(n_snap, n)
    left = np.linalg.qr(rng.standard_normal((n_snap, r)))[0]
    right = np.linalg.qr(rng.standard_normal((n, r)))[0]
    return (left * np.logspace(0, -3, r)) @ right.T


def from_file(path: Path) -> np.ndarray:
    from fom.snapshots import read_snapshots

    snap = read_snapshots(path)
    return (snap.states - snap.states[:, :1]).reshape(-1, snap.states.shape[-1])


def main(argv: list[str] | None = None) -> int:
    from rom.manifolds import GRAM_MIN_SIZE, pod

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", type=int, default=10, help="leading modes wanted")
    ap.add_argument("--snapshots", type=Path, help="a snapshot file (its deviations)")
    ap.add_argument("--full", action="store_true",
                    help="2D Burgers' training file at 60^2 (made if missing)")
    args = ap.parse_args(argv)
    if args.full and args.snapshots is None:
        from fom.config import load_config
        from fom.snapshots import snapshot_paths, snapshots_from_config

        cfg = load_config(ROOT / "examples" / "burgers2d.toml")
        args.snapshots = snapshot_paths(cfg)["train"]
        if not args.snapshots.exists():
            snapshots_from_config(cfg, progress=True)
    x = from_file(args.snapshots) if args.snapshots else synthetic(3000, 3364)
    k = args.modes
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"snapshots: {x.shape[0]} x {x.shape[1]} "
          f"({args.snapshots or 'synthetic'}), {k} leading modes")
    if min(x.shape) < GRAM_MIN_SIZE:
        print(f"FAIL: the matrix is below the Gram route's size ({GRAM_MIN_SIZE})")
        return 1
    t0 = time.perf_counter()
    u_ref, s_ref = pod(x)
    t_svd = time.perf_counter() - t0
    t0 = time.perf_counter()
    u, s = pod(x, k)
    t_gram = time.perf_counter() - t0
    ds = float(np.max(np.abs(s[:k] - s_ref[:k]) / s_ref[:k]))
    du = float(np.max(np.abs(np.abs(u.T @ u_ref[:, :k]) - np.eye(k))))
    print(f"exact thin SVD (all {min(x.shape)} modes): {t_svd:8.2f} s")
    print(f"Gram route ({k} modes):        {t_gram:8.2f} s   -> {t_svd / t_gram:.1f}x faster")
    print(f"leading singular values: max relative difference {ds:.2e}; "
          f"vectors: max | |U^T U_ref| - I | {du:.2e}")
    checks = [("leading singular values within 1e-10", ds <= 1e-10),
              ("leading vectors within 1e-8", du <= 1e-8),
              ("Gram route faster than the SVD", t_gram < t_svd)]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
