"""Hyper-reduced ROMs from a config: ``[hyperreduction]``, ``mrom sample-mesh``, the
``hr-deep-lspg`` / ``hr-pod-lspg`` methods of ``mrom rom`` and ``mrom run``.

The tiny pipeline config of tests/tiny_configs.py (64 cells, 50 steps, a decoder trained for
2 epochs, p = 2), trained once per module by ``mrom run`` itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_configs import tiny_config

import fom
from fom.config import load_config
from fom.errors import InputError
from fom.snapshots import read_snapshots
from rom import AffineManifold, DecoderManifold, solve_rom
from rom.cli import main
from rom.manifolds import cone_fraction
from rom.online import pod_trajectories
from rom.results import read_results
from rom.sample_mesh import build_sample_mesh, interpolation_constant, read_sample_mesh

ALL = 'methods = ["deep-lspg", "pod-lspg", "hr-deep-lspg", "hr-pod-lspg"]\nlatent_dims = [2]'
HR = "[hyperreduction]\nn_samples = {n}\nn_basis = {m}\n"


def cli(*argv: str) -> tuple[int, str]:
    """``mrom ARGV`` in this process: exit status and standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def write(folder: Path, rom: str = ALL, hr: str = HR.format(n=64, m=12),
          name: str = "run.toml") -> str:
    (folder / name).write_text(tiny_config("out", rom, hr))
    return name


@pytest.fixture(scope="module")
def every_row(tmp_path_factory) -> tuple[Path, str]:
    """``mrom run`` with the HR methods on a sample mesh of every row (n_samples = N)."""
    d = tmp_path_factory.mktemp("hr_run")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        code, out = cli("run", "-q", write(d))
    finally:
        os.chdir(cwd)
    assert code == 0
    return d, out


def copy_inputs(src: Path, dst: Path) -> Path:
    """The snapshot files and the trained model of ``src/out`` in ``dst/out``."""
    (dst / "out").mkdir()
    for name in ("train.h5", "test.h5"):
        shutil.copy2(src / "out" / name, dst / "out" / name)
    shutil.copytree(src / "out" / "models", dst / "out" / "models")
    return dst


def test_hr_on_every_row_is_the_unreduced_rom(every_row):
    d, out = every_row
    mesh_path = d / "out" / "sample_mesh.h5"
    # mrom run names the sample mesh among its outputs, after the models
    lines = out[out.index("outputs:"):].splitlines()
    assert lines[4].split() == ["models", "out/models/p2"]
    assert lines[5].split() == ["sample", "mesh", "out/sample_mesh.h5"]
    mesh = read_sample_mesh(mesh_path)
    assert mesh.rows.tolist() == list(range(64)) and mesh.stencil.tolist() == list(range(64))
    rs = read_results(d / "out" / "rom_results.h5")
    assert sorted(rs.runs) == ["deep-lspg-p2", "hr-deep-lspg-p2", "hr-pod-lspg-p2",
                               "pod-lspg-p2"]
    for kind in ("deep", "pod"):
        full, hr = rs.runs[f"{kind}-lspg-p2"], rs.runs[f"hr-{kind}-lspg-p2"]
        assert hr.steps.tolist() == [rs.t.size] and hr.failures == [""]
        # the same Gauss-Newton on the same rows: the same iterates, bit for bit (every
        # row's dependency cone is the whole decoder, so its full kernels give the rows);
        # the states are decoded afterwards by g alone (without J): equal to round-off
        np.testing.assert_array_equal(hr.latent, full.latent)
        np.testing.assert_array_equal(hr.iterations, full.iterations)
        np.testing.assert_allclose(hr.states, full.states, rtol=1e-14, atol=0)
        assert hr.relative_error[0] == pytest.approx(full.relative_error[0], rel=1e-10)
        assert hr.projection_error[0] == full.projection_error[0]
        assert hr.info == {**full.info, "hyperreduction": "collocation", "n_samples": 64,
                           "n_stencil": 64, "n_basis": 12, "sample_by": "row",
                           "sample_mesh": "out/sample_mesh.h5"}
        assert hr.wall_s[0] > 0 and hr.manifold == full.manifold and hr.projection == "lspg"
    table = (d / "out" / "report" / "report.md").read_text()
    assert table.count("| HR Deep LSPG | 2 |") == 1 and table.count("| 64 (64) |") == 2
    assert table.count("| — |") == 2  # the unreduced ROMs have no samples


def test_hr_on_few_rows_converges(every_row, tmp_path, monkeypatch):
    d = copy_inputs(every_row[0], tmp_path)
    monkeypatch.chdir(d)
    cfg = write(d, hr=HR.format(n=16, m=8))
    code, out = cli("rom", cfg)
    assert code == 0
    assert out.startswith("wrote out/sample_mesh.h5: 16 rows of N = 64, stencil ")
    rs = read_results("out/rom_results.h5")
    mesh = read_sample_mesh("out/sample_mesh.h5")
    assert 16 < mesh.stencil.size < 64
    for kind in ("deep", "pod"):
        full, hr = rs.runs[f"{kind}-lspg-p2"], rs.runs[f"hr-{kind}-lspg-p2"]
        assert hr.steps.tolist() == [rs.t.size] and hr.failures == [""]
        assert hr.info["n_samples"] == 16 and hr.info["n_stencil"] == mesh.stencil.size
        # 16 of 64 rows: close to the unreduced ROM, not equal to it
        assert 0 < abs(hr.relative_error[0] - full.relative_error[0]) \
            < 0.5 * full.relative_error[0]
    # the same inputs: nothing is rebuilt or recomputed
    stamps = [os.stat(p).st_mtime_ns for p in ("out/rom_results.h5", "out/sample_mesh.h5")]
    assert cli("rom", cfg) == (0, "wrote out/rom_results.h5\n")
    assert [os.stat(p).st_mtime_ns for p in ("out/rom_results.h5",
                                              "out/sample_mesh.h5")] == stamps
    # other [hyperreduction] settings: a new mesh, new results
    cfg = write(d, hr=HR.format(n=24, m=8))
    code, out = cli("rom", "-q", cfg)
    assert "the old one was made with other [hyperreduction] settings" not in out  # -q
    assert read_results("out/rom_results.h5").runs["hr-pod-lspg-p2"].info["n_samples"] == 24


def test_sample_mesh_command_writes_a_valid_file_and_skips_when_up_to_date(tmp_path,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path, rom='methods = ["hr-pod-lspg"]', hr=HR.format(n=20, m=10))
    code, out = cli("sample-mesh", "-q", cfg)  # generates the training snapshots first
    assert code == 0
    path = Path("out/sample_mesh.h5")
    mesh = read_sample_mesh(path)
    train = read_snapshots("out/train.h5")
    problem = train.problem()
    assert out == (f"wrote {path}: 20 rows of N = 64, stencil {mesh.stencil.size}, residual "
                   f"basis 10 (collocation), interpolation constant "
                   f"{interpolation_constant(mesh):.3g}, from out/train.h5, 2 trajectories\n")
    # the file is what build_sample_mesh makes of the training file, with its provenance
    # of the trajectories the autoencoders and POD train on: the validation one is left out
    kept = pod_trajectories(load_config(cfg), train)
    assert kept == [0, 2]
    direct = build_sample_mesh(train, n_samples=20, n_basis=10, trajectories=kept)
    np.testing.assert_array_equal(mesh.rows, direct.rows)
    np.testing.assert_array_equal(mesh.basis_rows, direct.basis_rows)
    np.testing.assert_array_equal(mesh.stencil, problem.sample(mesh.rows).stencil)
    assert mesh.source == {"path": "out/train.h5", "sha256": train.checksum()}
    assert mesh.settings == {"n_samples": 20, "n_basis": 10, "source": "velocity",
                             "by": "row", "method": "collocation", "max_snapshots": 20000,
                             "trajectories": [0, 2]}
    assert 1.0 <= interpolation_constant(mesh) < 1e3  # orthonormal basis: sigma_min <= 1
    # up to date: kept, said so
    stamp, data = path.stat().st_mtime_ns, path.read_bytes()
    code, out = cli("sample-mesh", cfg)
    assert out.startswith(f"{path} is up to date: 20 rows of N = 64") and code == 0
    assert path.stat().st_mtime_ns == stamp
    # the same inputs give the same bytes (no timestamps in the file)
    path.unlink()
    assert cli("sample-mesh", "-q", cfg)[0] == 0 and path.read_bytes() == data
    # other settings, or another training file: rebuilt, and said why
    cfg = write(tmp_path, rom='methods = ["hr-pod-lspg"]', hr=HR.format(n=20, m=8)
                + 'method = "gnat"\n')
    out = cli("sample-mesh", cfg)[1]
    assert "(the old one was made with other [hyperreduction] settings): 20 rows" in out
    assert read_sample_mesh(path).method == "gnat"
    Path(cfg).write_text(Path(cfg).read_text().replace("[5.5, 0.03]", "[5.5, 0.025]"))
    assert cli("snapshots", "-q", cfg)[0] == 0  # a new training file
    out = cli("sample-mesh", cfg)[1]
    assert "(the old one was made from another training snapshot file)" in out
    assert read_sample_mesh(path).source["sha256"] == read_snapshots("out/train.h5").checksum()


def test_a_sample_mesh_of_another_problem_is_refused(tmp_path):
    small = fom.Burgers1D(n_cells=64, t_final=0.7)
    fom.snapshots.generate_snapshots(small, [[4.3, 0.021], [5.15, 0.0285]],
                                     tmp_path / "train.h5", progress=False)
    mesh = build_sample_mesh(read_snapshots(tmp_path / "train.h5"), n_samples=12, n_basis=6)
    mesh = read_sample_mesh(mesh.save(tmp_path / "mesh.h5"))
    big = fom.Burgers1D(n_cells=128, t_final=0.7)
    pod = AffineManifold(np.linalg.qr(np.random.default_rng(0).standard_normal((128, 3)))[0])
    with pytest.raises(InputError, match=r"^sample mesh was built for problem burgers1d "
                                         r"with N = 64, not burgers1d with N = 128$"):
        solve_rom(big, pod, [4.3, 0.021], sample_mesh=mesh)


def test_decoder_rows_by_the_restricted_or_the_full_kernels(every_row):
    """A few rows go through the decoder's dependency cone, most rows through its full
    kernels; both give the full decoder's rows."""
    man = DecoderManifold.load(every_row[0] / "out" / "models" / "p2")
    z = np.array([0.3, -0.2])
    g, jac = man.decode_with_jacobian(z)
    few, most = np.array([5, 40]), np.arange(2, 62)
    assert cone_fraction(man.trained, few) < 0.5 <= cone_fraction(man.trained, most)
    for rows, full in ((few, False), (most, True)):
        g_rows, jac_rows = man.decode_rows(z, rows)
        assert man._rows_full == full
        np.testing.assert_allclose(g_rows, g[rows], rtol=0, atol=1e-13)
        np.testing.assert_allclose(jac_rows, jac[rows], rtol=0, atol=1e-13)
    with pytest.raises(InputError, match=r"rows must lie in \[0, 64\), got 0..64"):
        man.decode_rows(z, np.array([0, 64]))


def test_example_config_hyperreduction_section_is_valid(monkeypatch, tmp_path):
    from fom.config import load_config
    from rom.pipeline import check_run_config
    from rom.sample_mesh import hyperreduction_settings

    path = Path(__file__).resolve().parents[1] / "examples" / "burgers1d.toml"
    monkeypatch.chdir(tmp_path)  # the config's output_dir is relative: create nothing here
    cfg = load_config(path)
    check_run_config(cfg)
    sec = hyperreduction_settings(cfg)
    assert (sec["n_samples"], sec["n_basis"], sec["sample_by"]) == (96, 32, "row")
    assert list(tmp_path.iterdir()) == []


def test_hyperreduction_defaults_do_not_bind_configs_without_hr_methods(tmp_path):
    """A problem with fewer rows than the default n_samples runs without hyper-reduction;
    asking for it there is refused with the key named."""
    from fom.config import load_config
    from rom.pipeline import check_run_config

    text = tiny_config("out", 'methods = ["pod-lspg"]').replace("n_cells = 64", "n_cells = 16")
    (tmp_path / "small.toml").write_text(text)
    check_run_config(load_config(tmp_path / "small.toml"))
    (tmp_path / "hr.toml").write_text(text.replace('"pod-lspg"', '"hr-pod-lspg"'))
    with pytest.raises(InputError, match=r"hr.toml \[hyperreduction\] n_samples: must be at "
                                         r"most 16, the rows of burgers1d \(N = 16\), got 40"):
        check_run_config(load_config(tmp_path / "hr.toml"))
