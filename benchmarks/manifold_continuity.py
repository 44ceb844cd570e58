"""Can a ROM follow the FOM trajectory along a trained decoder manifold? A diagnostic.

For one model and one test parameter, prints per time step (or every ``--every`` steps):

* ``encoder``: the error of the best fit on the manifold started from the encoder,
  ``x_ref + g(z*)`` with ``z* = argmin |x_ref + g(z) - x^n|`` from ``z = h(x^n - x0)``;
* ``continued``: the same best fit, but started from the previous step's fitted latent state,
  i.e. the manifold point a continuation method (such as the ROM's Gauss–Newton, which starts
  each step from the last one) reaches when it tracks the trajectory exactly;
* ``deep-lspg``: the Deep LSPG state (:func:`rom.solve_rom`).

All are relative errors ``|x - x_FOM| / |x_FOM|`` at that step. Where ``continued`` leaves
``encoder``, the decoder folds: the trajectory's states lie on two sheets of the manifold
with no descent path between them, and no continuation method follows it, however small the
projection error. On 1D Burgers at p = 3 that happens where the shock leaves the domain
(README, "Results").

    python benchmarks/manifold_continuity.py output/burgers1d/models/p3 \
        --snapshots output/burgers1d/test.h5 --index 1 --start 340 --stop 400

``--minimizer`` adds, per printed step, whether Deep LSPG's state is the minimizer of that
step's LSPG residual (1) or a Gauss–Newton failure: ``from-fit`` is the error of the residual's
local minimizer reached from the best fit (``scipy.optimize.least_squares``, given the ROM's own
previous states), and ``|r| rom`` / ``|r| fit`` are the residual norms at Deep LSPG's state and
at the best fit. ``from-fit`` equal to ``deep-lspg`` with ``|r| rom < |r| fit``: the ROM's state
is the minimizer, and a better solver cannot help. ``--blocks B`` adds where Deep LSPG's error
sits: its norm in ``B`` equal blocks of the state, relative to ``|x_FOM|``. On 1D Burgers at
p = 3, where the shock leaves the domain (README, "Where p = 3 loses accuracy"):

    python benchmarks/manifold_continuity.py output/burgers1d/models/p3 \
        --snapshots output/burgers1d/train.h5 --index 5 --start 404 --stop 434 --every 2 \
        --minimizer --blocks 16

``--latent-speed`` instead prints, for every trajectory of the file, how unevenly the
encoder moves along it: ``max_n |z^{n+1} - z^n| / median_n |z^{n+1} - z^n|`` with
``z^n = h(x^n - x0)``. Where the encoder's latent path sprints, the decoder packs a long
stretch of latent space into a short stretch of states, and a ROM that moves ``z``
continuously stalls there. It needs no ROM run and no held-out data (training trajectories
are fine). On 1D Burgers at p = 3 it separated the models whose Deep LSPG failed on the
validation trajectories from those whose did not (README, "The seed matters more than the
recipe"):

    python benchmarks/manifold_continuity.py MODEL --snapshots TRAIN.h5 --latent-speed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fom.snapshots import read_snapshots  # noqa: E402
from rom.manifolds import DecoderManifold, fit_latent  # noqa: E402
from rom.projection import lspg_residual_jacobian, solve_rom  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="trained model directory")
    parser.add_argument("--snapshots", type=Path, default=Path("output/burgers1d/test.h5"),
                        help="FOM trajectories (snapshot file)")
    parser.add_argument("--index", type=int, default=1, help="which trajectory of the file")
    parser.add_argument("--start", type=int, default=0, help="first step printed")
    parser.add_argument("--stop", type=int, default=None, help="last step printed")
    parser.add_argument("--every", type=int, default=1, help="print every n-th step")
    parser.add_argument("--minimizer", action="store_true",
                        help="also the LSPG residual's minimizer reached from the best fit, "
                             "and the residual norms at Deep LSPG's state and at the best fit")
    parser.add_argument("--blocks", type=int, default=0,
                        help="also Deep LSPG's error in this many equal blocks of the state")
    parser.add_argument("--latent-speed", action="store_true",
                        help="the encoder's latent speed ratio on every trajectory instead")
    args = parser.parse_args(argv)

    snap = read_snapshots(args.snapshots)
    if args.latent_speed:
        return latent_speed(DecoderManifold.load(args.model), snap, args.model)
    if not 0 <= args.index < snap.n_mu:
        parser.error(f"--index must lie in [0, {snap.n_mu - 1}] for {args.snapshots}")
    problem, mu, states = snap.problem(), snap.mu[args.index], snap.states[args.index]
    if args.blocks < 0 or args.blocks > states.shape[1]:
        parser.error(f"--blocks must lie in [0, {states.shape[1]}]")
    manifold = DecoderManifold.load(args.model)
    rom = solve_rom(problem, manifold, mu, "lspg")
    x_ref = rom.x_ref
    codes = manifold.trained.encode_many(manifold.encoder_input(states, x_ref))
    stop = states.shape[0] - 1 if args.stop is None else min(args.stop, states.shape[0] - 1)

    def err(z: np.ndarray, k: int) -> float:
        return float(np.linalg.norm(x_ref + manifold.decode(z) - states[k])
                     / np.linalg.norm(states[k]))

    print(f"{args.model}, mu = {mu.tolist()}: relative error per step")
    print(f"{'step':>5} {'t':>7} {'encoder':>9} {'continued':>10} {'deep-lspg':>10}" +
          (f" {'from-fit':>9} {'|r| rom':>10} {'|r| fit':>10}" if args.minimizer else ""))
    z_cont = fit_latent(manifold, states[0] - x_ref, codes[0])
    for k in range(0, stop + 1):
        if k > 0:
            z_cont = fit_latent(manifold, states[k] - x_ref, z_cont, max_iter=200)
        if k < args.start or (k - args.start) % args.every:
            continue
        z_enc = fit_latent(manifold, states[k] - x_ref, codes[k])
        e_rom = np.linalg.norm(rom.states[k] - states[k]) / np.linalg.norm(states[k])
        line = (f"{k:>5} {snap.t[k]:>7.2f} {100 * err(z_enc, k):>8.2f}% "
                f"{100 * err(z_cont, k):>9.2f}% {100 * e_rom:>9.2f}%")
        if args.minimizer and k > 0:
            z_min, r_rom, r_fit = step_minimizer(problem, manifold, mu, rom, k, z_enc)
            line += f" {100 * err(z_min, k):>8.2f}% {r_rom:>10.3e} {r_fit:>10.3e}"
        print(line)
        if args.blocks:
            blocks = np.array_split(rom.states[k] - states[k], args.blocks)
            print("       error by block: " + " ".join(
                f"{np.linalg.norm(b) / np.linalg.norm(states[k]):.2g}" for b in blocks))
    return 0


def step_minimizer(problem: Any, manifold: Any, mu: np.ndarray, rom: Any, k: int,
                   z_start: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The local minimizer of step ``k``'s LSPG residual (1) reached from ``z_start``.

    The residual is the one Deep LSPG minimized at step ``k`` (the ROM's own previous states
    as the history; the scheme's first step is backward Euler), evaluated by
    :func:`rom.projection.lspg_residual_jacobian`; the minimizer is found by
    ``scipy.optimize.least_squares`` (trust region, tolerances 1e-14).

    Returns
    -------
    z_min, r_rom, r_start
        The minimizer, and the residual norms at the ROM's latent state of step ``k`` and at
        ``z_start``.
    """
    from scipy.optimize import least_squares

    from fom.steppers import get_scheme, scheme_at_step

    if not 1 <= k < rom.latent.shape[0]:
        raise ValueError(f"step {k} is not a step of the ROM (1 .. {rom.latent.shape[0] - 1})")
    scheme = scheme_at_step(get_scheme(rom.scheme), k)
    history = [rom.states[k - 1 - j] for j in range(scheme.n_history)]

    def residual(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return lspg_residual_jacobian(problem, manifold, mu, z, rom.x_ref, history,
                                      float(rom.t[k]), rom.dt, scheme)

    fit = least_squares(lambda z: residual(z)[0], np.asarray(z_start, dtype=np.float64),
                        jac=lambda z: residual(z)[1], xtol=1e-14, ftol=1e-14, gtol=1e-14)
    return (fit.x, float(np.linalg.norm(residual(rom.latent[k])[0])),
            float(np.linalg.norm(residual(z_start)[0])))


def latent_speed_ratio(manifold: DecoderManifold, states: np.ndarray) -> float:
    """``max |z^{n+1} - z^n| / median |z^{n+1} - z^n|`` along one trajectory ``states``
    (its first state is ``x0``), ``z^n`` the encoder's latent states (of ``x^n - x0`` or
    ``x^n``, as the model was trained)."""
    x_ref, _ = manifold.initial_condition(states[0])
    z = np.asarray(manifold.trained.encode_many(manifold.encoder_input(states, x_ref)),
                   dtype=np.float64)
    dz = np.linalg.norm(np.diff(z, axis=0), axis=1)
    return float(dz.max() / max(float(np.median(dz)), 1e-300))


def latent_speed(manifold: DecoderManifold, snap: Any, model: Path) -> int:
    """Print :func:`latent_speed_ratio` of every trajectory of ``snap`` and their summary."""
    ratios = np.array([latent_speed_ratio(manifold, snap.states[i]) for i in range(snap.n_mu)])
    print(f"{model}: encoder latent speed, max / median over the steps of each trajectory")
    for i in range(snap.n_mu):
        print(f"  mu = {snap.mu[i].tolist()}: {ratios[i]:.2f}")
    print(f"median {np.median(ratios):.2f}, max {ratios.max():.2f} "
          f"(trajectory {int(np.argmax(ratios))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
