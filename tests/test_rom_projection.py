"""LSPG and Galerkin projection on POD and decoder manifolds (1D Burgers, 64 cells)."""

import numpy as np
import pytest

import fom
from fom.errors import ConvergenceError, InputError
from fom.steppers import BACKWARD_EULER, BDF2, time_jacobian, time_residual
from rom import AffineManifold, DecoderManifold, ROMOptions, ROMResult, solve_rom
from rom.metrics import relative_error
from rom.projection import lspg_residual_jacobian
from rom.testing import QuadraticDecoder

MU_TRAIN = [[4.25, 0.015], [5.5, 0.03], [4.8, 0.022]]
MU_TEST = np.array([4.3, 0.021])
TIGHT = ROMOptions(atol=1e-14, rtol=1e-14, gtol=1e-14, ftol=0, stol=1e-15, max_iter=50)


@pytest.fixture(scope="module")
def problem():
    return fom.Burgers1D(n_cells=64, t_final=1.4)  # 20 backward-Euler steps of 0.07


@pytest.fixture(scope="module")
def train(problem):
    return np.array([fom.solve(problem, m).states for m in MU_TRAIN])


@pytest.fixture(scope="module")
def pod(train):
    return AffineManifold.from_snapshots(train, 6)


@pytest.fixture(scope="module")
def decoder(pod):
    rng = np.random.default_rng(0)
    n, p = pod.basis.shape
    psi = 0.05 * np.linalg.qr(rng.standard_normal((n, p)))[0]
    return QuadraticDecoder(pod.basis, psi, bias=1e-2 * rng.standard_normal(n))


def in_span_basis(states):
    """POD basis of one trajectory's deviations, all nonzero singular values kept."""
    man = AffineManifold.from_snapshots(states[None], states.shape[0] - 1)
    s = man.singular_values
    return man.truncate(int(np.sum(s > 1e-10 * s[0])))


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("scheme", ["backward_euler", "bdf2"])
@pytest.mark.parametrize("method", ["lspg", "galerkin"])
def test_pod_rom_reproduces_fom_at_training_parameter(problem, scheme, method):
    """With the trajectory's own snapshots in the basis, the FOM solution is the ROM's."""
    ref = fom.solve(problem, MU_TRAIN[1], scheme=scheme)
    man = in_span_basis(ref.states)
    rom = solve_rom(problem, man, MU_TRAIN[1], method, scheme=scheme, options=TIGHT)
    assert rom.states.shape == ref.states.shape
    assert relative_error(ref.states, rom.states) < 1e-10
    # and a basis missing the last snapshot's direction cannot
    poor = man.truncate(4)
    assert relative_error(ref.states,
                          solve_rom(problem, poor, MU_TRAIN[1], method).states) > 1e-6


@pytest.mark.parametrize("method", ["lspg", "galerkin"])
@pytest.mark.parametrize("kind", ["pod", "decoder"])
def test_rom_starts_exactly_at_x0(problem, pod, decoder, kind, method):
    """The first state is the FOM's x0(mu), from the latent point the theory says: z = 0 on
    the centred POD basis, h(0) on the decoder manifold (section 5.3), computed here with
    the decoder's own encoder and formula, not through the manifold's x_ref."""
    man = pod if kind == "pod" else DecoderManifold(decoder)
    rom = solve_rom(problem, man, MU_TEST, method, t_final=0.21)
    x0 = problem.initial_state(MU_TEST)
    z0 = np.zeros(pod.p) if kind == "pod" else decoder.encode(np.zeros(problem.n_dofs))
    np.testing.assert_allclose(rom.latent[0], z0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rom.states[0], x0, rtol=0, atol=1e-12)
    if kind == "decoder":
        g0 = decoder.bias + decoder.phi @ z0 + 0.5 * decoder.psi @ (z0 * z0)
        np.testing.assert_allclose(rom.x_ref, x0 - g0, rtol=0, atol=1e-13)
        assert np.abs(rom.x_ref - x0).max() > 1e-3  # x_ref = x0 - g(h(0)) differs from x0
    assert np.abs(rom.states[1] - x0).max() > 1e-3  # and the ROM moves on from there


def classical_pod_lspg(problem, basis, mu, dt, n_steps):
    """Textbook POD-LSPG with backward Euler: Gauss-Newton with the test basis
    Psi = (I - dt df/dx) Phi, dense linear algebra (independent of rom.projection)."""
    x0 = problem.initial_state(mu)
    z = np.zeros(basis.shape[1])
    latent = [z.copy()]
    x_prev = x0
    for n in range(1, n_steps + 1):
        t = n * dt
        for _ in range(50):
            x = x0 + basis @ z
            r = time_residual(problem, BACKWARD_EULER, x, -x_prev, t, dt, mu)
            psi = time_jacobian(problem, BACKWARD_EULER, x, t, dt, mu) @ basis
            dz = np.linalg.solve(psi.T @ psi, -psi.T @ r)
            z = z + dz
            if np.linalg.norm(dz) < 1e-13 * (1 + np.linalg.norm(z)):
                break
        x_prev = x0 + basis @ z
        latent.append(z.copy())
    return np.array(latent)


def test_lspg_backward_euler_affine_is_classical_pod_lspg(problem, pod):
    rom = solve_rom(problem, pod, MU_TEST, "lspg", options=TIGHT)
    ref = classical_pod_lspg(problem, pod.basis, MU_TEST, problem.dt, 20)
    np.testing.assert_allclose(rom.latent, ref, rtol=0, atol=1e-9)
    # the Petrov-Galerkin condition Psi^T r^n = 0 holds at every step
    for n in range(1, 21):
        r, a = lspg_residual_jacobian(problem, pod, MU_TEST, rom.latent[n], rom.x_ref,
                                      [rom.states[n - 1]], n * problem.dt, problem.dt)
        assert np.linalg.norm(a.T @ r) <= 1e-9 * np.linalg.norm(a) * max(np.linalg.norm(r), 1)


def test_galerkin_and_lspg_coincide_as_dt_goes_to_zero(problem, train):
    """Affine manifold: LSPG tests the residual with (I - dt df/dx) Phi, Galerkin with Phi,
    so over a fixed time the two trajectories differ by O(dt)."""
    fine = np.array([fom.solve(problem, m, dt=0.0175).states for m in MU_TRAIN])
    man = AffineManifold.from_snapshots(fine, 8)
    diffs = []
    for dt in (0.035, 0.0175):
        a = solve_rom(problem, man, MU_TEST, "lspg", dt=dt)
        b = solve_rom(problem, man, MU_TEST, "galerkin", dt=dt)
        diffs.append(np.linalg.norm(a.states[-1] - b.states[-1]))
    assert diffs[1] > 0
    assert 1.6 < diffs[0] / diffs[1] < 2.5


def test_galerkin_decoder_satisfies_its_ode(problem, decoder):
    """Each Galerkin step solves z^n - z^{n-1} = dt J(z^n)^+ f(x_ref + g(z^n)) (backward Euler)."""
    man = DecoderManifold(decoder)
    rom = solve_rom(problem, man, MU_TEST, "galerkin", t_final=0.35, options=TIGHT)
    for n in range(1, rom.n_steps + 1):
        g, jac = man.decode_with_jacobian(rom.latent[n])
        f = problem.velocity(rom.x_ref + g, rom.t[n], MU_TEST)
        rhs = problem.dt * np.linalg.lstsq(jac, f, rcond=None)[0]
        np.testing.assert_allclose(rom.latent[n] - rom.latent[n - 1], rhs, rtol=0, atol=1e-11)


# ----------------------------------------------------------------------------- Jacobians


@pytest.mark.parametrize("scheme", [BACKWARD_EULER, BDF2])
@pytest.mark.parametrize("jacobian", ["csr", "fused"])
@pytest.mark.parametrize("kind", ["pod", "decoder"])
def test_gauss_newton_jacobian_matches_finite_differences(problem, pod, decoder, train, scheme,
                                                          jacobian, kind):
    man = pod if kind == "pod" else DecoderManifold(decoder)
    x_ref, z0 = man.initial_condition(problem.initial_state(MU_TEST))
    z = z0 + np.array([0.4, -0.3, 0.2, 0.1, -0.05, 0.02])
    hist = [train[0, 3], train[0, 2]][: scheme.n_history]
    t, dt = 0.28, 0.07

    def res(zz):
        return lspg_residual_jacobian(problem, man, MU_TEST, zz, x_ref, hist, t, dt, scheme,
                                      jacobian)[0]

    r, a = lspg_residual_jacobian(problem, man, MU_TEST, z, x_ref, hist, t, dt, scheme,
                                  jacobian)
    # the residual is fom.steppers' and the Jacobian is (dr/dx) J
    x = x_ref + man.decode(z)
    from fom.steppers import history_term

    np.testing.assert_allclose(r, time_residual(problem, scheme, x, history_term(scheme, hist),
                                                t, dt, MU_TEST), rtol=0, atol=1e-13)
    jac = man.decode_with_jacobian(z)[1]
    np.testing.assert_allclose(a, time_jacobian(problem, scheme, x, t, dt, MU_TEST) @ jac,
                               rtol=0, atol=1e-13)
    h = 1e-6
    fd = np.column_stack([(res(z + h * e) - res(z - h * e)) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(a, fd, rtol=0, atol=1e-6 * np.abs(a).max())


def test_solver_variants_agree(problem, pod, decoder):
    man = DecoderManifold(decoder)
    base = solve_rom(problem, man, MU_TEST, "lspg", options=TIGHT)
    for kw in ({"jacobian": "csr"}, {"options": ROMOptions(**{**TIGHT.to_dict(),
                                                              "linear_solver": "normal"})},
               {"options": ROMOptions(**{**TIGHT.to_dict(), "line_search": False})}):
        other = solve_rom(problem, man, MU_TEST, "lspg", **({"options": TIGHT} | kw))
        np.testing.assert_allclose(other.states, base.states, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- bookkeeping


@pytest.mark.parametrize("method", ["lspg", "galerkin"])
def test_decoder_evaluated_once_per_iterate(problem, decoder, method):
    decoder.calls = 0
    rom = solve_rom(problem, DecoderManifold(decoder), MU_TEST, method)
    expected = 1 + rom.iterations.sum() + rom.backtracks.sum()
    assert rom.decoder_calls == expected == decoder.calls
    assert np.all(rom.iterations[1:] >= 1)
    assert rom.iterations[0] == 0 and rom.residuals.shape == (21,)
    assert rom.latent.shape == (21, 6) and rom.p == 6 and rom.method == method


def test_result_fields(problem, pod):
    rom = solve_rom(problem, pod, MU_TEST, "lspg", scheme="bdf2", dt=0.035, t_final=0.35)
    assert isinstance(rom, ROMResult)
    np.testing.assert_allclose(rom.t, 0.035 * np.arange(11))
    assert rom.scheme == "bdf2" and rom.dt == 0.035 and rom.manifold["kind"] == "pod"
    assert rom.wall_s > 0 and np.all(np.isfinite(rom.residuals))
    assert rom.options["gtol"] == ROMOptions().gtol


class NaNAfter(fom.Burgers1D):
    """Burgers whose velocity becomes NaN from time ``t_bad`` on (forces a failure)."""

    def __init__(self, t_bad, **kw):
        super().__init__(**kw)
        self.t_bad = t_bad

    def velocity(self, x, t, mu):
        f = super().velocity(x, t, mu)
        return f * np.nan if t >= self.t_bad else f


@pytest.mark.parametrize("method", ["lspg", "galerkin"])
def test_non_converging_step_raises_with_partial_result(pod, method):
    problem = NaNAfter(0.25, n_cells=64, t_final=1.4)
    full = solve_rom(problem, pod, MU_TEST, method, t_final=0.21)
    with pytest.raises(ConvergenceError) as info:  # the overridden velocity is used
        solve_rom(problem, pod, MU_TEST, method)
    err = info.value
    assert err.step == 4 and err.time == pytest.approx(0.28)
    assert "step 4" in str(err) and "t = 0.28" in str(err) and "residual" in str(err)
    assert not np.isfinite(err.residual)
    part = err.partial
    assert isinstance(part, ROMResult) and part.t.shape == (4,) and part.states.shape[0] == 4
    np.testing.assert_array_equal(part.states, full.states)
    np.testing.assert_array_equal(part.latent, full.latent)


def test_max_iter_failure_names_the_step(problem, pod):
    opts = ROMOptions(atol=0, rtol=0, gtol=0, stol=0, max_iter=1)
    with pytest.raises(ConvergenceError, match=r"step 1 \(t = 0.07\).*max_iter = 1") as info:
        solve_rom(problem, pod, MU_TEST, "lspg", options=opts)
    assert info.value.partial.t.shape == (1,)
    assert info.value.residual > 0


def test_input_errors(problem, pod):
    with pytest.raises(InputError, match="unknown ROM method"):
        solve_rom(problem, pod, MU_TEST, "petrov")
    with pytest.raises(InputError, match="N = 64"):
        solve_rom(fom.Burgers1D(n_cells=32), pod, MU_TEST)
    with pytest.raises(InputError, match="parameters"):
        solve_rom(problem, pod, [4.3])
    with pytest.raises(InputError, match="whole number"):
        solve_rom(problem, pod, MU_TEST, dt=0.3)
    with pytest.raises(InputError, match="linear_solver"):
        ROMOptions(linear_solver="svd")
    with pytest.raises(InputError, match="max_iter"):
        ROMOptions(max_iter=-1)


@pytest.mark.parametrize(("method", "curvature", "max_iter"), [("galerkin", 1.0, 8),
                                                                ("lspg", 0.5, 5)])
def test_secant_corrections_speed_up_convergence_to_the_same_solution(problem, pod, method,
                                                                      curvature, max_iter):
    """On a strongly curved decoder, plain Gauss-Newton (LSPG) and the Newton iteration with
    the J^+ derivative neglected (Galerkin) converge linearly; the secant corrections make
    them superlinear without changing the solution."""
    rng = np.random.default_rng(7)
    psi = curvature * np.linalg.qr(rng.standard_normal(pod.basis.shape))[0]
    man = DecoderManifold(QuadraticDecoder(pod.basis, psi, bias=1e-2 * rng.standard_normal(64)))
    fast = solve_rom(problem, man, MU_TEST, method, options=ROMOptions(max_iter=max_iter))
    with pytest.raises(ConvergenceError, match="max_iter"):
        solve_rom(problem, man, MU_TEST, method,
                  options=ROMOptions(max_iter=max_iter, secant=False))
    slow = solve_rom(problem, man, MU_TEST, method,
                     options=ROMOptions(**{**TIGHT.to_dict(), "secant": False}))
    tight = solve_rom(problem, man, MU_TEST, method, options=TIGHT)
    np.testing.assert_allclose(tight.states, slow.states, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.states, slow.states, rtol=0, atol=1e-6)
    assert fast.iterations.sum() < slow.iterations.sum()
