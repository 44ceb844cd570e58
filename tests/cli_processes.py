"""Helpers for tests that run ``mrom`` in subprocesses: clean environment, optional
``mpiexec``, and SIGKILL at a chosen moment (the ``MROM_TEST_PAUSE`` hook of
:func:`fom.snapshots.debug_pause`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without MPI launcher and ``MROM_`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MROM_"))}
    env.update(extra)
    return env


def mpiexec() -> str | None:
    """The mpiexec of the venv (the ``mpich`` wheel) or of the system, if mpi4py works."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    cand = Path(sys.executable).parent / "mpiexec"
    return str(cand) if cand.exists() else shutil.which("mpiexec")


def command(args: list[str], n_ranks: int = 0) -> list[str]:
    """``mrom ARGS`` as a subprocess command line, under ``mpiexec -n n_ranks`` if asked."""
    cmd = [sys.executable, "-m", "rom.cli", *args]
    if n_ranks:
        exe = mpiexec()
        if exe is None:
            pytest.skip("mpi4py or mpiexec not available (pip install '.[mpi]')")
        cmd = [exe, "-n", str(n_ranks), *cmd]
    return cmd


def run(args: list[str], cwd: Path, n_ranks: int = 0) -> subprocess.CompletedProcess:
    """Run ``mrom ARGS`` in ``cwd`` and require success."""
    res = subprocess.run(command(args, n_ranks), cwd=cwd, env=clean_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res


def run_and_kill(args: list[str], cwd: Path, pause: str, ready: Callable[[], bool],
                 n_ranks: int = 0, timeout: float = 120) -> None:
    """Start the command with ``MROM_TEST_PAUSE=pause``; SIGKILL its whole process group as
    soon as ``ready()`` holds (like a batch system enforcing a wall-time limit)."""
    proc = subprocess.Popen(command(args, n_ranks), cwd=cwd, env=clean_env(MROM_TEST_PAUSE=pause),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"run ended (status {proc.returncode}) before the kill point: "
                            f"{proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("kill point not reached in time")
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def n_parts(ckpt: Path) -> int:
    return len(list(ckpt.glob("traj_*.h5")))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".ckpt" in p.name)
