"""Hyper-reduced LSPG: sample meshes and the sampled Gauss-Newton driver."""

import tracemalloc
import types

import numpy as np
import pytest

import rom.projection as projection
from fom import Burgers1D, InputError, solve
from fom.snapshots import generate_snapshots, read_snapshots
from rom.manifolds import AffineManifold, DecoderManifold
from rom.metrics import relative_error
from rom.projection import solve_rom
from rom.sample_mesh import (
    SampleMesh,
    build_sample_mesh,
    interpolation_constant,
    oversample,
    qdeim,
    read_sample_mesh,
)
from rom.testing import QuadraticDecoder

MU = np.array([4.3, 0.021])


class AllRows:
    """A sample mesh of every row: hyper-reduced LSPG must then be unreduced LSPG."""

    def __init__(self, n):
        self.rows = np.arange(n)

    def describe(self):
        return {"hyperreduction": "all rows"}


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    prob = Burgers1D(n_cells=128, dt=0.14, t_final=14.0)
    path = tmp_path_factory.mktemp("hr") / "train.h5"
    mus = [[4.25, 0.015], [4.25, 0.03], [5.5, 0.015], [5.5, 0.03], [4.9, 0.0225]]
    generate_snapshots(prob, mus, path, progress=False)
    return read_snapshots(path)


def test_all_rows_reproduce_the_unreduced_rom(train):
    prob = train.problem()
    pod = AffineManifold.from_snapshots(train, 4)
    rng = np.random.default_rng(0)
    quad = DecoderManifold(QuadraticDecoder(pod.basis,
                                            0.05 * rng.standard_normal(pod.basis.shape)))
    for man in (pod, quad):
        full = solve_rom(prob, man, MU)
        hr = solve_rom(prob, man, MU, sample_mesh=AllRows(prob.n_dofs))
        assert np.array_equal(hr.latent, full.latent)
        assert np.array_equal(hr.iterations, full.iterations)


def test_more_samples_approach_the_unreduced_error(train):
    prob = train.problem()
    ref = solve(prob, MU, dt=0.14, t_final=14.0)
    pod = AffineManifold.from_snapshots(train, 6)
    full = relative_error(ref.states, solve_rom(prob, pod, MU).states)
    errors = {}
    for n_samples, method in ((12, "collocation"), (60, "collocation"), (60, "gnat")):
        mesh = build_sample_mesh(train, n_samples=n_samples, n_basis=24, method=method)
        hr = solve_rom(prob, pod, MU, sample_mesh=mesh)
        errors[n_samples, method] = relative_error(ref.states, hr.states)
    # measured: full 8.13 %, 60 samples 8.40 % (collocation), 8.19 % (GNAT); 12 samples 171 %
    assert errors[60, "collocation"] < 1.05 * full
    assert errors[60, "gnat"] < 1.02 * full
    assert errors[12, "collocation"] > 5 * full


def test_qdeim_and_oversampling():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((300, 8)))[0]
    rows = qdeim(basis)
    assert rows.size == 8 and np.unique(rows).size == 8
    smin = [np.linalg.svd(basis[rows], compute_uv=False)[-1]]
    more = rows
    for _ in range(5):
        more = oversample(basis, more, 4)
        smin.append(np.linalg.svd(basis[more], compute_uv=False)[-1])
    # adding rows never lowers sigma_min, and the greedy rule raises it substantially
    assert np.all(np.diff(smin) >= -1e-14) and smin[-1] > 1.5 * smin[0]
    assert np.unique(more).size == more.size == 28


def test_sample_mesh_file_roundtrip_and_errors(train, tmp_path):
    mesh = build_sample_mesh(train, n_samples=20, n_basis=10)
    assert isinstance(mesh, SampleMesh) and mesh.rows.size == 20
    assert np.isfinite(interpolation_constant(mesh))
    op = train.problem().sample(mesh.rows)
    assert np.array_equal(op.stencil, mesh.stencil)
    path = mesh.save(tmp_path / "mesh.h5")
    back = read_sample_mesh(path)
    assert np.array_equal(back.rows, mesh.rows) and back.settings == mesh.settings
    assert back.source["sha256"] == train.checksum()
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="junk.h5"):
        read_sample_mesh(tmp_path / "junk.h5")
    with pytest.raises(InputError, match="n_basis"):
        build_sample_mesh(train, n_samples=20, n_basis=10_000)


class _FullSizeForbidden:
    """Proxy that raises on every full-size evaluation while ``armed``."""

    def __init__(self, inner, forbidden):
        self._inner, self._forbidden, self.armed = inner, forbidden, False

    def __getattr__(self, name):
        if name in self._forbidden and self.armed:
            raise AssertionError(f"full-size {name} called in the online loop")
        return getattr(self._inner, name)


def test_nothing_of_size_n_in_the_online_loop(monkeypatch):
    n = 400_000  # one state vector is 3.2 MB
    prob = Burgers1D(n_cells=n, dt=0.001, t_final=0.01)
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.standard_normal((n, 3)))[0] * 0.1
    man = AffineManifold(basis)
    rows = np.sort(rng.choice(n, 40, replace=False))
    p_spy = _FullSizeForbidden(prob, {"velocity", "jacobian", "velocity_jacobian_into",
                                      "velocity_rows", "jacobian_rows"})
    m_spy = _FullSizeForbidden(man, {"decode", "decode_with_jacobian"})
    peaks = []

    def perf_counter():  # called at the start and at the end of the time loop only
        if not peaks:
            p_spy.armed = m_spy.armed = True
            tracemalloc.start()
            tracemalloc.reset_peak()
            peaks.append(tracemalloc.get_traced_memory()[0])
        else:
            p_spy.armed = m_spy.armed = False
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        return 0.0

    mesh = types.SimpleNamespace(rows=rows, describe=lambda: {})
    solve_rom(prob, man, MU, sample_mesh=mesh, reconstruct=False)  # compile and load kernels
    monkeypatch.setattr(projection, "_time", types.SimpleNamespace(
        perf_counter=perf_counter, process_time=lambda: 0.0))
    res = solve_rom(p_spy, m_spy, MU, sample_mesh=mesh, reconstruct=False)
    assert res.states is None and np.all(np.isfinite(res.latent))
    assert np.linalg.norm(res.latent[-1] - res.latent[0]) > 0
    assert peaks[1] - peaks[0] < 100_000  # far below one vector of size N (3.2 MB)
