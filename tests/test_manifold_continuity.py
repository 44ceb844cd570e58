"""``benchmarks/manifold_continuity.py --minimizer``: the LSPG step minimizer it reports is the
state Deep LSPG reached (an analytic decoder, no TensorFlow)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import fom
from rom import AffineManifold, DecoderManifold, ROMOptions, solve_rom
from rom.testing import QuadraticDecoder

ROOT = Path(__file__).resolve().parents[1]
MU = np.array([4.3, 0.021])
TIGHT = ROMOptions(atol=1e-14, rtol=1e-14, gtol=1e-14, ftol=0, stol=1e-15, max_iter=50)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "manifold_continuity", ROOT / "benchmarks" / "manifold_continuity.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup():
    problem = fom.Burgers1D(n_cells=64, t_final=0.7)     # 10 steps of 0.07
    train = np.array([fom.solve(problem, m).states for m in ([4.25, 0.015], [5.5, 0.03])])
    pod = AffineManifold.from_snapshots(train, 4)
    rng = np.random.default_rng(0)
    psi = 0.05 * np.linalg.qr(rng.standard_normal(pod.basis.shape))[0]
    return problem, DecoderManifold(QuadraticDecoder(pod.basis, psi))


@pytest.mark.parametrize("scheme", ["backward_euler", "bdf2"])
@pytest.mark.parametrize("k", [1, 6])
def test_minimizer_from_elsewhere_is_the_rom_state(bench, setup, scheme, k):
    problem, man = setup
    rom = solve_rom(problem, man, MU, "lspg", scheme=scheme, options=TIGHT)
    start = rom.latent[k] + np.array([0.3, -0.2, 0.1, 0.05])
    z_min, r_rom, r_start = bench.step_minimizer(problem, man, MU, rom, k, start)
    # the residual and history are the ROM's own: its solve is the minimizer reached
    np.testing.assert_allclose(z_min, rom.latent[k], rtol=0, atol=1e-7)
    assert r_rom < r_start
    # another step's history gives another minimizer
    z_other = bench.step_minimizer(problem, man, MU, rom, k + 1, start)[0]
    assert np.linalg.norm(z_other - rom.latent[k]) > 1e-4


def test_minimizer_refuses_the_initial_step(bench, setup):
    problem, man = setup
    rom = solve_rom(problem, man, MU, "lspg")
    with pytest.raises(ValueError, match="step 0"):
        bench.step_minimizer(problem, man, MU, rom, 0, rom.latent[0])
