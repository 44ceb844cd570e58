"""Snapshot generation and the snapshot file format (docs/formats.md, "Snapshot files").

::

    /mu        float64 (n_mu, n_params)   attrs: names = param_names
    /t         float64 (n_t,)             times, t[0] = 0
    /states    float64 (n_mu, n_t, N)     chunked one trajectory per chunk
    /grid/...  coordinates of the unknowns (e.g. x, y), attrs: the state layout (below)
    /stats/iterations (n_mu, n_t) int64, /stats/residuals (n_mu, n_t), /stats/wall_s (n_mu,)
    /residuals/values float64 (n_res, N), /residuals/index int64 (n_res, 3)   (optional)
    file attrs: problem, problem_config (JSON), solver (JSON), version, created (ISO 8601)

``/t`` holds the times of the stored steps: every step, or with ``store_every = k`` the steps
``0, k, 2k, ...`` and the last one (``solver["store_every"]``). ``/grid``'s attributes
``fields`` (field names in state order), ``grid_shape`` (shape of one field's unknowns),
``axes`` (the coordinate name of each axis of ``grid_shape``) and ``order`` say how a state
vector maps to fields on the grid: the fields one after the other, each in row-major order of
``grid_shape`` (the last axis, x, varies fastest). With ``store_residuals`` the file holds the
residual vector ``r^n(x^(k))`` of every Newton iterate ``k`` (0 = the initial guess) of every
stored step, and ``/residuals/index`` its ``(mu_index, step, iteration)``.

Files are written atomically. A long run checkpoints each finished trajectory into a folder
``<output>.ckpt/`` (one small HDF5 file per trajectory, itself written atomically, so a file
there is complete or absent); the same command run again skips what is done, and the folder is
removed once the final file is in place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .atomic import atomic_path, check_writable_dir, make_output_folder, write_text_atomic
from .config import Field, RunConfig, load_config, one_of, positive
from .errors import InputError
from .hdf5 import open_for_reading
from .newton import NewtonOptions
from .problem import Problem
from .registry import get_problem
from .solve import FOMResult, solve

FORMAT_VERSION = 1


def _package_version() -> str:
    from . import __version__

    return __version__


# ----------------------------------------------------------------------------- parameters


def paper_train_grid() -> np.ndarray:
    """The paper's 10 x 8 Burgers training grid, shape (80, 2), mu1 slowest.

    ``mu1 = 4.25 + (1.25/9) i``, ``i = 0..9``, ``mu2 = 0.015 + (0.015/7) j``, ``j = 0..7``
    (docs/problems.md).
    """
    mu1 = 4.25 + (1.25 / 9) * np.arange(10)
    mu2 = 0.015 + (0.015 / 7) * np.arange(8)
    return np.array([(a, b) for a in mu1 for b in mu2])


def paper_test_params() -> np.ndarray:
    """The paper's two Burgers test parameters, (4.3, 0.021) and (5.15, 0.0285)."""
    return np.array([[4.3, 0.021], [5.15, 0.0285]])


def flame2d_train_grid() -> np.ndarray:
    """The flame's 4 x 4 training grid over the parameter box (corners included), shape
    (16, 2) as ``(A, E)``, ``A`` slowest."""
    a_vals = np.linspace(2.3375e12, 6.5e12, 4)
    e_vals = np.linspace(5.6255e3, 9.0e3, 4)
    return np.array([(a, e) for a in a_vals for e in e_vals])


def flame2d_test_params() -> np.ndarray:
    """The flame's two test parameters, (3.0e12, 7.0e3) and (5.5e12, 6.0e3) as ``(A, E)``."""
    return np.array([[3.0e12, 7.0e3], [5.5e12, 6.0e3]])


NAMED_GRIDS = {
    "paper-train": paper_train_grid,
    "paper-test": paper_test_params,
    "flame2d-train": flame2d_train_grid,
    "flame2d-test": flame2d_test_params,
}


def named_grid(name: str) -> np.ndarray:
    """Parameter sets by name: ``paper-train`` (80 points) and ``paper-test`` (2 points) of
    the 1D Burgers study, ``flame2d-train`` (16) and ``flame2d-test`` (2) of the flame."""
    try:
        return NAMED_GRIDS[name]()
    except KeyError:
        raise InputError(
            f"unknown parameter grid {name!r}; choose one of {', '.join(NAMED_GRIDS)}"
        ) from None


#: How a config allows parameters outside the problem's domain (``[snapshots]``, ``[sweep]``).
CONFIG_OVERRIDE = "set check_bounds = false to allow it"
#: How ``mrom snapshots --mu`` allows them.
CLI_OVERRIDE = "--allow-outside-domain allows it"


def check_mu_list(problem: Problem, mus: Any, *, check_bounds: bool = True,
                  override: str = CONFIG_OVERRIDE) -> np.ndarray:
    """Validate a list of parameter vectors and return it as an (n_mu, n_params) array.

    The one rule for parameters a user gives (``mrom snapshots --mu``, the training, test and
    any other parameter sets of ``[snapshots]``, ``[sweep] params``, the parameters of
    ``mrom rom``): each vector must have the problem's number of finite entries and, unless
    ``check_bounds`` is false, lie inside the problem's parameter domain
    (:attr:`fom.problem.Problem.param_bounds`).

    Parameters
    ----------
    problem : Problem
    mus : iterable of array_like
    check_bounds : bool
        Refuse parameters outside the domain (the default everywhere).
    override : str
        How the user allows them, appended to the error message.

    Raises
    ------
    InputError
    """
    rows = list(mus)
    if not rows:
        raise InputError("no parameters given")
    arr = np.array([problem.check_mu(m) for m in rows])
    if check_bounds:
        for m in arr:
            try:
                problem.check_mu(m, check_bounds=True)
            except InputError as exc:
                raise InputError(f"{exc} ({override})") from None
    return arr


def read_parameters(path: str | os.PathLike) -> np.ndarray:
    """Only the ``/mu`` dataset of a snapshot file, shape (n_mu, n_params) (validated)."""
    path = Path(path)
    with open_for_reading(path, "snapshot file") as f:
        return _dataset(f, "mu", path, 2)


# ----------------------------------------------------------------------------- reading


@dataclass
class SnapshotSet:
    """Contents of a snapshot file, validated by :func:`read_snapshots`."""

    path: Path
    mu: np.ndarray
    param_names: tuple[str, ...]
    t: np.ndarray
    states: np.ndarray
    grid: dict[str, np.ndarray]
    problem_name: str
    problem_config: dict[str, Any]
    solver: dict[str, Any]
    attrs: dict[str, Any]

    @property
    def n_mu(self) -> int:
        return self.states.shape[0]

    @property
    def n_dofs(self) -> int:
        return self.states.shape[2]

    def problem(self) -> Problem:
        """Rebuild the problem that produced the file."""
        return get_problem(self.problem_name, **self.problem_config)

    def checksum(self) -> str:
        """SHA-256 of the file's bytes (recorded in trained-model manifests)."""
        return file_checksum(self.path)

    @functools.cached_property
    def newton_residuals(self) -> np.ndarray | None:
        """The Newton iterates' residuals ``(n_res, N)`` of a file written with
        ``store_residuals`` (read from the file on first access; :func:`read_residuals` also
        gives their index), else None."""
        if not self.solver.get("store_residuals", False):
            return None
        return read_residuals(self.path)[0]


def file_checksum(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dataset(f: h5py.File, name: str, path: Path, ndim: int) -> np.ndarray:
    if name not in f:
        raise InputError(f"{path}: missing dataset /{name}")
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise InputError(f"{path}: /{name} is not a dataset")
    if ds.dtype.kind != "f":
        raise InputError(f"{path}: /{name} has dtype {ds.dtype}, expected float64")
    if ds.ndim != ndim:
        raise InputError(f"{path}: /{name} has {ds.ndim} dimensions, expected {ndim}")
    arr = np.asarray(ds[()], dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: /{name} contains NaN or Inf values")
    return arr


def _json_attr(f: h5py.File, key: str, path: Path) -> dict[str, Any]:
    if key not in f.attrs:
        raise InputError(f"{path}: missing file attribute '{key}'")
    try:
        val = json.loads(f.attrs[key])
    except (TypeError, ValueError):
        raise InputError(f"{path}: file attribute '{key}' is not valid JSON") from None
    if not isinstance(val, dict):
        raise InputError(f"{path}: file attribute '{key}' must be a JSON object")
    return val


def read_snapshots(path: str | os.PathLike) -> SnapshotSet:
    """Load a snapshot file and validate it (shapes, dtypes, finite values, attributes).

    Raises
    ------
    InputError
        Naming the file and the dataset or attribute at fault.
    """
    path = Path(path)
    with open_for_reading(path, "snapshot file") as f:
        try:
            for key in ("problem", "problem_config", "solver"):
                if key not in f.attrs:
                    raise InputError(f"{path}: missing file attribute '{key}'")
            mu = _dataset(f, "mu", path, 2)
            t = _dataset(f, "t", path, 1)
            states = _dataset(f, "states", path, 3)
            if states.shape[0] != mu.shape[0]:
                raise InputError(f"{path}: /states has {states.shape[0]} trajectories but /mu "
                                 f"has {mu.shape[0]} rows")
            if states.shape[1] != t.shape[0]:
                raise InputError(f"{path}: /states has {states.shape[1]} times but /t has "
                                 f"{t.shape[0]}")
            if t.size == 0 or t[0] != 0.0 or np.any(np.diff(t) <= 0):
                raise InputError(f"{path}: /t must start at 0 and increase strictly")
            names = f["mu"].attrs.get("names")
            if names is None:
                raise InputError(f"{path}: /mu has no 'names' attribute")
            names = tuple(str(n) for n in np.atleast_1d(names))
            if len(names) != mu.shape[1]:
                raise InputError(f"{path}: /mu has {mu.shape[1]} columns but names {names}")
            grid = {}
            if "grid" in f:
                for k in f["grid"]:
                    grid[k] = np.asarray(f["grid"][k][()])
            problem_name = str(f.attrs["problem"])
            problem_config = _json_attr(f, "problem_config", path)
            solver = _json_attr(f, "solver", path)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        except (KeyError, OSError) as exc:
            raise InputError(f"{path}: unreadable content ({exc})") from None
    return SnapshotSet(path, mu, names, t, states, grid, problem_name, problem_config, solver,
                       attrs)


# ----------------------------------------------------------------------------- writing


def _file_attrs(problem: Problem, solver: dict[str, Any],
                deterministic: bool = False) -> dict[str, str]:
    attrs = {
        "problem": problem.name,
        "problem_config": json.dumps(problem.config(), sort_keys=True),
        "solver": json.dumps(solver, sort_keys=True),
        "version": _package_version(),
        "format_version": str(FORMAT_VERSION),
    }
    if not deterministic:
        attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return attrs


def grid_layout(problem: Problem) -> dict[str, Any]:
    """The ``/grid`` attributes that describe the state layout of ``problem``."""
    shape = tuple(int(v) for v in problem.grid_shape)
    axes = ("z", "y", "x")[-len(shape):] if len(shape) <= 3 else tuple(
        f"axis{k}" for k in range(len(shape)))
    return {"fields": list(problem.fields), "grid_shape": list(shape), "axes": list(axes),
            "order": "state = [field 0, field 1, ...]; each field row-major over grid_shape "
                     "(the last axis varies fastest)"}


def write_snapshots(path: str | os.PathLike, problem: Problem, results: Sequence[FOMResult],
                    extra_attrs: dict[str, str] | None = None, *,
                    deterministic: bool = False,
                    residual_parts: Sequence[str | os.PathLike] | None = None) -> Path:
    """Write trajectories of one problem to ``path`` atomically (the snapshot layout of
    docs/formats.md).

    ``results`` is read one trajectory at a time (it may load each on access, like the
    checkpoint folder of :func:`generate_snapshots`), so memory holds one trajectory.
    ``residual_parts``: HDF5 files whose ``/residuals`` groups (``values``, ``index``) are
    concatenated, in order, into the file's ``/residuals``.

    With ``deterministic=True`` the file holds nothing that depends on when or how fast it was
    made (no ``created`` attribute, no ``/stats/wall_s``), so the same trajectories always give
    the same bytes (used by ``mrom sweep``; timings go to a sidecar log instead). Object
    timestamps are never stored (``track_times=False``).
    """
    n_mu, n = len(results), problem.n_dofs
    if not n_mu:
        raise InputError("no trajectories to write")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        mu, iters, res, wall = [], [], [], []
        for i in range(n_mu):
            r = results[i]
            if i == 0:
                t, solver = r.t, r.solver
                ds = f.create_dataset("states", shape=(n_mu, t.size, n), dtype="f8",
                                      chunks=(1, t.size, n), track_times=False)
            elif r.t.shape != t.shape or not np.array_equal(r.t, t):
                raise InputError("all trajectories in a snapshot file must share the same times")
            ds[i] = r.states
            mu.append(r.mu)
            iters.append(r.iterations)
            res.append(r.residuals)
            wall.append(r.wall_s)
            del r
        dmu = f.create_dataset("mu", data=np.array(mu), track_times=False)
        dmu.attrs["names"] = list(problem.param_names)
        f.create_dataset("t", data=t, track_times=False)
        g = f.create_group("grid")
        for k, v in problem.grid.items():
            g.create_dataset(k, data=v, track_times=False)
        for k, v in grid_layout(problem).items():
            g.attrs[k] = v
        st = f.create_group("stats")
        st.create_dataset("iterations", data=np.array(iters), track_times=False)
        st.create_dataset("residuals", data=np.array(res), track_times=False)
        if not deterministic:
            st.create_dataset("wall_s", data=np.array(wall), track_times=False)
        if residual_parts is not None:
            _concatenate_residuals(f, n, residual_parts)
        solver = {**solver, "store_residuals": residual_parts is not None}
        attrs = _file_attrs(problem, solver, deterministic)
        attrs.update(extra_attrs or {})
        for k, v in attrs.items():
            f.attrs[k] = v
    return Path(path)


# ----------------------------------------------------------------------------- residuals

RESIDUAL_INDEX_COLUMNS = ("mu_index", "step", "iteration")
#: group of a checkpoint part that holds its Newton residuals (its "residuals" are the norms)
PART_RESIDUALS = "newton_residuals"


class ResidualRecorder:
    """``fom.solve`` callback that appends the Newton residuals of the stored steps to an HDF5
    group (``values`` (n, N), ``index`` (n, 3)), a block of rows at a time: memory holds one
    block, never the whole trajectory's residuals."""

    def __init__(self, group: h5py.Group, n_dofs: int, steps: np.ndarray, mu_index: int) -> None:
        self.keep = np.zeros(int(steps[-1]) + 1, dtype=bool)
        self.keep[steps] = True
        self.mu_index = mu_index
        block = max(1, min(64, (32 << 20) // (8 * n_dofs)))  # at most 32 MiB buffered
        self.buf = np.empty((block, n_dofs))
        self.ibuf = np.empty((block, 3), dtype=np.int64)
        self.fill = 0
        self.values = group.create_dataset("values", shape=(0, n_dofs), maxshape=(None, n_dofs),
                                           chunks=(1, n_dofs), dtype="f8")
        self.index = group.create_dataset("index", shape=(0, 3), maxshape=(None, 3),
                                          chunks=(1024, 3), dtype="i8")

    def __call__(self, step: int, iteration: int, r: np.ndarray) -> None:
        if step < self.keep.size and self.keep[step]:
            self.buf[self.fill] = r
            self.ibuf[self.fill] = (self.mu_index, step, iteration)
            self.fill += 1
            if self.fill == self.buf.shape[0]:
                self.flush()

    def flush(self) -> None:
        """Append the buffered rows to the datasets."""
        if self.fill:
            m = self.values.shape[0]
            self.values.resize(m + self.fill, axis=0)
            self.index.resize(m + self.fill, axis=0)
            self.values[m:] = self.buf[:self.fill]
            self.index[m:] = self.ibuf[:self.fill]
            self.fill = 0


def _concatenate_residuals(f: h5py.File, n: int, parts: Sequence[str | os.PathLike]) -> None:
    """``/residuals`` of ``f`` from the parts' ``/residuals`` groups, copied a block at a time."""
    sizes = []
    for p in parts:
        with h5py.File(p, "r") as src:
            sizes.append(src[PART_RESIDUALS + "/values"].shape[0])
    g = f.create_group("residuals")
    g.attrs["index_columns"] = list(RESIDUAL_INDEX_COLUMNS)
    total = int(sum(sizes))
    values = g.create_dataset("values", shape=(total, n), dtype="f8",
                              chunks=(1, n) if total else None, track_times=False)
    index = g.create_dataset("index", shape=(total, 3), dtype="i8", track_times=False)
    block = max(1, (64 << 20) // (8 * n))
    at = 0
    for p, size in zip(parts, sizes, strict=True):
        with h5py.File(p, "r") as src:
            index[at:at + size] = src[PART_RESIDUALS + "/index"][()]
            for lo in range(0, size, block):
                hi = min(size, lo + block)
                values[at + lo:at + hi] = src[PART_RESIDUALS + "/values"][lo:hi]
        at += size


def read_residuals(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The Newton residuals of a snapshot file made with ``store_residuals``.

    Returns ``(values (n_res, N), index (n_res, 3))``; the columns of ``index`` are
    ``(mu_index, step, iteration)`` (iteration 0 is the step's initial guess).

    Raises
    ------
    InputError
        If the file has no residuals or they do not match its states.
    """
    path = Path(path)
    with open_for_reading(path, "snapshot file") as f:
        if "residuals" not in f:
            raise InputError(f"{path}: no /residuals (generate the snapshots with "
                             f"store_residuals = true)")
        try:
            values = _dataset(f["residuals"], "values", path, 2)
            index = np.asarray(f["residuals/index"][()])
            n = f["states"].shape[2]
        except KeyError as exc:
            raise InputError(f"{path}: incomplete /residuals ({exc})") from None
    if values.shape[1] != n or index.shape != (values.shape[0], 3):
        raise InputError(f"{path}: /residuals/values {values.shape} and /residuals/index "
                         f"{index.shape} do not match the states' N = {n}")
    return values, index.astype(np.int64)


# ----------------------------------------------------------------------------- checkpoints


class Checkpoint:
    """A folder of finished trajectories, one atomically written HDF5 file each.

    The folder's ``manifest.json`` records what the run computes (problem, solver, the whole
    parameter list, and ``extra`` if given); a folder whose manifest differs belongs to another
    run and is refused. A folder without a manifest and without parts (a run killed between
    creating the folder and writing the manifest) is taken over.
    """

    def __init__(self, output: str | os.PathLike, problem: Problem, mus: np.ndarray,
                 solver: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.output = Path(output)
        self.folder = Path(str(self.output) + ".ckpt")
        self.problem = problem
        self.mus = mus
        self.manifest = {
            "problem": problem.name,
            "problem_config": problem.config(),
            "solver": solver,
            "mu": mus.tolist(),
        }
        self.manifest.update(extra or {})
        self._trash = Path(str(self.folder) + ".removing")

    def open(self) -> None:
        """Create the folder, or check that an existing one belongs to the same run."""
        man = self.folder / "manifest.json"
        shutil.rmtree(self._trash, ignore_errors=True)  # left by a kill during remove()
        if self.folder.exists() and not man.exists() and self.folder.is_dir() \
                and not any(self.folder.glob("traj_*.h5")):
            write_text_atomic(man, json.dumps(self.manifest, sort_keys=True))
        if self.folder.exists():
            try:
                old = json.loads(man.read_text())
            except (OSError, ValueError):
                old = None
            if old != json.loads(json.dumps(self.manifest)):
                raise InputError(
                    f"checkpoint folder {self.folder} belongs to a different run; remove it or "
                    f"choose another output file"
                )
        else:
            check_writable_dir(self.output)
            self.folder.mkdir()
            write_text_atomic(man, json.dumps(self.manifest, sort_keys=True))

    def part(self, i: int) -> Path:
        return self.folder / f"traj_{i:06d}.h5"

    def done(self) -> list[int]:
        """Indices of the trajectories already committed."""
        return [i for i in range(len(self.mus)) if self.part(i).exists()]

    @contextlib.contextmanager
    def part_file(self, i: int) -> Iterator[h5py.File]:
        """Trajectory ``i``'s part, open for writing under a temporary name and renamed into
        place when the block ends without an error (see :meth:`commit`)."""
        with atomic_path(self.part(i)) as tmp, h5py.File(tmp, "w") as f:
            yield f

    @staticmethod
    def write_result(f: h5py.File, result: FOMResult) -> None:
        """Store a trajectory in an open part file."""
        f.create_dataset("mu", data=result.mu)
        f.create_dataset("t", data=result.t)
        f.create_dataset("states", data=result.states)
        f.create_dataset("iterations", data=result.iterations)
        f.create_dataset("residuals", data=result.residuals)
        f.attrs["wall_s"] = result.wall_s
        f.attrs["solver"] = json.dumps(result.solver, sort_keys=True)

    def commit(self, i: int, result: FOMResult) -> None:
        """Store trajectory ``i`` atomically."""
        with self.part_file(i) as f:
            self.write_result(f, result)

    def load(self, i: int) -> FOMResult:
        with h5py.File(self.part(i), "r") as f:
            return FOMResult(np.asarray(f["mu"][()]), np.asarray(f["t"][()]),
                             np.asarray(f["states"][()]), np.asarray(f["iterations"][()]),
                             np.asarray(f["residuals"][()]), float(f.attrs["wall_s"]),
                             json.loads(f.attrs["solver"]))

    def results(self) -> Sequence[FOMResult]:
        """Every trajectory, each loaded from its part when accessed (one in memory at a
        time)."""
        return _LoadedOnAccess(self)

    def remove(self) -> None:
        """Delete the folder: renamed away first (atomic), so it is never seen half-deleted."""
        if self.folder.exists():
            shutil.rmtree(self._trash, ignore_errors=True)
            os.replace(self.folder, self._trash)
        shutil.rmtree(self._trash, ignore_errors=True)


class _LoadedOnAccess(Sequence):
    """The trajectories of a checkpoint folder as a sequence that reads each part on access."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt = ckpt

    def __len__(self) -> int:
        return len(self.ckpt.mus)

    def __getitem__(self, i):  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.ckpt.load(i)


def debug_pause(stage: str) -> None:
    """Testing hook: sleep at a named stage if ``MROM_TEST_PAUSE`` asks for it.

    ``MROM_TEST_PAUSE="commit:0.2,assemble:5"`` sleeps 0.2 s after each committed trajectory
    and 5 s during the final assembly, so that tests can kill a run at a chosen moment. Unset
    (the normal case), it does nothing.
    """
    spec = os.environ.get("MROM_TEST_PAUSE")
    if not spec:
        return
    import time

    for item in spec.split(","):
        name, _, secs = item.partition(":")
        if name.strip() == stage:
            try:
                time.sleep(float(secs))
            except ValueError:
                pass


def generate_snapshots(problem: Problem, mus: Iterable[Any], output: str | os.PathLike, *,
                       dt: float | None = None, t_final: float | None = None,
                       scheme: str = "backward_euler", options: NewtonOptions | None = None,
                       progress: bool = True, check_bounds: bool = True,
                       override: str = CONFIG_OVERRIDE, store_every: int = 1,
                       store_residuals: bool = False) -> Path:
    """Integrate the FOM at every parameter in ``mus`` and write one snapshot file.

    Resumable: finished trajectories are checkpointed in ``<output>.ckpt/`` and skipped when
    the same call is repeated after an interruption. Memory holds one trajectory at a time
    (the solve's stored states, then, while the file is assembled, one part).

    Parameters
    ----------
    problem : Problem
    mus : iterable of array_like
        Parameter vectors, each of length ``problem.n_params``.
    output : path
        Snapshot file to write (atomically).
    dt, t_final, scheme, options
        Passed to :func:`fom.solve` (``options`` defaults to the problem's
        :meth:`~fom.Problem.newton_defaults`).
    progress : bool
        Show a tqdm progress bar.
    check_bounds, override
        See :func:`check_mu_list`: parameters outside the problem's domain are refused unless
        ``check_bounds`` is false.
    store_every : int
        Store the states of every ``store_every``-th step and of the last step only.
    store_residuals : bool
        Also store the residual of every Newton iterate of the stored steps (``/residuals``;
        the sparse solver computes the trajectories then).

    Raises
    ------
    InputError
        For any bad input, before anything is written.
    """
    from tqdm import tqdm

    from .solve import time_grid
    from .steppers import get_scheme
    from .trajectory import stored_steps

    # every input is checked before anything is written (no checkpoint folder of a bad run)
    mu_arr = check_mu_list(problem, mus, check_bounds=check_bounds, override=override)
    options = options or problem.newton_defaults()
    dt_, n_steps = time_grid(problem.dt if dt is None else dt,
                             problem.t_final if t_final is None else t_final)
    scheme = get_scheme(scheme).name
    steps = stored_steps(n_steps, store_every)
    solver = {"scheme": scheme, "dt": dt_, "n_steps": n_steps, "newton": options.to_dict(),
              "store_every": int(store_every), "store_residuals": bool(store_residuals)}
    check_writable_dir(output)
    ckpt = Checkpoint(output, problem, mu_arr, solver)
    ckpt.open()
    done = set(ckpt.done())
    todo = [i for i in range(len(mu_arr)) if i not in done]
    for i in tqdm(todo, desc=f"FOM {problem.name}", unit="traj", disable=not progress,
                  initial=len(done), total=len(mu_arr)):
        with ckpt.part_file(i) as f:
            rec = ResidualRecorder(f.create_group(PART_RESIDUALS), problem.n_dofs, steps, i) \
                if store_residuals else None
            res = solve(problem, mu_arr[i], dt=dt_, t_final=n_steps * dt_, scheme=scheme,
                        options=options, store_every=store_every, callback=rec)
            if rec is not None:
                rec.flush()
            ckpt.write_result(f, res)
        debug_pause("commit")
    parts = [ckpt.part(i) for i in range(len(mu_arr))] if store_residuals else None
    write_snapshots(output, problem, ckpt.results(), residual_parts=parts)
    debug_pause("assemble")
    ckpt.remove()
    return Path(output)


# ----------------------------------------------------------------------------- configs

SNAPSHOTS_SCHEMA = {
    "train": Field((str, list), "paper-train", doc="named grid or list of parameter vectors"),
    "test": Field((str, list), "paper-test", doc="named grid or list of parameter vectors"),
    "scheme": Field(str, "backward_euler", one_of("backward_euler", "bdf2"),
                    doc="time scheme of the FOM (and of the ROMs)"),
    "check_bounds": Field(bool, True, doc="refuse parameters outside the problem's parameter "
                                          "domain (false allows them)"),
    "store_every": Field(int, 1, positive,
                         doc="store the states of every k-th step (and the last) only"),
    "store_residuals": Field(bool, False,
                             doc="also store every Newton iterate's residual (/residuals)"),
}


def problem_from_config(cfg: RunConfig) -> Problem:
    """Build the problem of a run config's ``[problem]`` section."""
    section = dict(cfg.sections.get("problem", {}))
    name = section.pop("name", None)
    if not isinstance(name, str):
        raise InputError(f"{cfg.where('problem')}: missing required key 'name'")
    try:
        return get_problem(name, **section)
    except InputError as exc:
        raise InputError(f"{cfg.where('problem')}: {exc}") from None


def parameter_list(value: str | list, problem: Problem, where: str,
                   check_bounds: bool = True) -> np.ndarray:
    """A config's parameter set: a named grid or a list of vectors, validated by
    :func:`check_mu_list` (``where`` prefixes the error messages)."""
    try:
        mus = named_grid(value) if isinstance(value, str) else value
        return check_mu_list(problem, mus, check_bounds=check_bounds)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def snapshot_paths(cfg: RunConfig) -> dict[str, Path]:
    """Where a run config's training and test snapshot files go."""
    return {"train": cfg.output_dir / "train.h5", "test": cfg.output_dir / "test.h5"}


def snapshots_from_config(config: str | os.PathLike | RunConfig, *,
                          progress: bool = True) -> list[Path]:
    """Generate the training and test snapshot files of a run config (``mrom snapshots CFG``).

    Files that already exist and were made by the same problem, solver and parameters are kept.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    problem, sets = snapshot_sets(cfg)
    scheme = cfg.section("snapshots", SNAPSHOTS_SCHEMA)["scheme"]
    make_output_folder(cfg.output_dir, f"{cfg.path} output_dir")
    written = []
    sec = cfg.section("snapshots", SNAPSHOTS_SCHEMA)
    store = {"store_every": sec["store_every"], "store_residuals": sec["store_residuals"]}
    for path, mus in sets.values():
        if not snapshot_file_matches(path, problem, mus, scheme, **store):
            generate_snapshots(problem, mus, path, scheme=scheme, progress=progress,
                               check_bounds=False, **store)  # checked by snapshot_sets
        else:  # complete; drop a checkpoint left by a run killed just after writing the file
            shutil.rmtree(str(path) + ".ckpt", ignore_errors=True)
        written.append(path)
    return written


def snapshot_sets(cfg: RunConfig) -> tuple[Problem, dict[str, tuple[Path, np.ndarray]]]:
    """The problem and every parameter set of a run config, validated, with their files.

    Checks ``[problem]``, ``[snapshots]``, each parameter set (:func:`check_mu_list`, with
    ``[snapshots] check_bounds``) and that ``output_dir`` can be written, and creates
    nothing: ``{kind: (snapshot file, parameters)}`` for each kind of
    :func:`snapshot_paths` ("train", "test").
    """
    problem = problem_from_config(cfg)
    sec = cfg.section("snapshots", SNAPSHOTS_SCHEMA)
    sets = {kind: (path, parameter_list(sec[kind], problem, f"{cfg.where('snapshots')} {kind}",
                                        sec["check_bounds"]))
            for kind, path in snapshot_paths(cfg).items()}
    cfg.check_output_dir()
    return problem, sets


def snapshot_file_matches(path: Path, problem: Problem, mus: np.ndarray, scheme: str, *,
                          store_every: int = 1, store_residuals: bool = False) -> bool:
    """True if ``path`` is a valid snapshot file of exactly this problem, scheme, mu list and
    storage options."""
    if not path.exists():
        return False
    try:
        snap = read_snapshots(path)
    except InputError:
        return False
    return (snap.problem_name == problem.name
            and snap.problem_config == json.loads(json.dumps(problem.config()))
            and snap.solver.get("scheme") == scheme
            and snap.solver.get("store_every", 1) == store_every
            and snap.solver.get("store_residuals", False) == store_residuals
            and snap.mu.shape == mus.shape and bool(np.array_equal(snap.mu, mus)))
