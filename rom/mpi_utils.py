"""Small MPI helpers for :mod:`rom.sweep`: lazy mpi4py, polite waiting, JSON messages.

MPI is optional. :func:`get_comm` imports :mod:`mpi4py` only when the process was started by an
MPI launcher (``mpiexec``/``mpirun``/``srun`` set ``PMI_*``, ``OMPI_*`` or ``PMIX_*``
variables) or when ``MROM_MPI=1`` forces it; ``MROM_MPI=0`` forces a serial run. Outside a
launcher, or with a single rank, it returns ``None`` and the caller runs serially.

Messages are JSON documents sent as raw bytes (``MPI.BYTE`` buffers), so nothing is pickled.
Waiting is done by polling with short sleeps instead of blocking MPI calls: MPICH's blocking
calls spin a core at 100 %, which would steal the CPU from the rank that does the work when
ranks share cores.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from fom.errors import InputError

#: Environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm's PMI2).
LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
                 "MPI_LOCALNRANKS")

#: Longest sleep between two polls of a pending message (seconds).
MAX_POLL_S = 0.01


def launched_by_mpi() -> bool:
    """True if this process looks like one rank of an MPI job (or ``MROM_MPI=1``)."""
    flag = os.environ.get("MROM_MPI", "").strip().lower()
    if flag in ("0", "no", "off", "false"):
        return False
    if flag in ("1", "yes", "on", "true"):
        return True
    return any(v in os.environ for v in LAUNCHER_VARS)


def _launcher_size() -> int:
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        try:
            return int(os.environ[var])
        except (KeyError, ValueError):
            continue
    return 1


def get_comm() -> Any | None:
    """``MPI.COMM_WORLD`` if running under MPI with more than one rank, else ``None``.

    Raises
    ------
    InputError
        If a launcher started several ranks but mpi4py is not installed (each rank would
        otherwise do the whole job on its own).
    """
    if not launched_by_mpi():
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        size = _launcher_size()
        if size > 1:
            raise InputError(
                f"started under MPI with {size} ranks but mpi4py is not installed; "
                f"install the extra: pip install 'manifold-rom[mpi]'"
            ) from None
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


class Poller:
    """Exponentially growing sleeps between polls, reset whenever something happened."""

    def __init__(self) -> None:
        self.delay = 1e-4

    def reset(self) -> None:
        self.delay = 1e-4

    def sleep(self) -> None:
        time.sleep(self.delay)
        self.delay = min(2 * self.delay, MAX_POLL_S)


def probe(comm: Any, source: int | None, tag: int) -> int | None:
    """Non-blocking: the source rank of a pending message with ``tag`` (from ``source``, or
    from any rank if None), or None if there is none."""
    from mpi4py import MPI

    status = MPI.Status()
    src = MPI.ANY_SOURCE if source is None else source
    if comm.Iprobe(source=src, tag=tag, status=status):
        return status.Get_source()
    return None


def send_json(comm: Any, obj: Any, dest: int, tag: int) -> None:
    """Send ``obj`` as UTF-8 JSON bytes."""
    from mpi4py import MPI

    data = json.dumps(obj).encode()
    comm.Send([data, MPI.BYTE], dest=dest, tag=tag)


def recv_json(comm: Any, source: int, tag: int) -> tuple[Any, int]:
    """Wait (politely) for a JSON message from ``source`` and return ``(obj, source)``."""
    from mpi4py import MPI

    status = MPI.Status()
    poll = Poller()
    while not comm.Iprobe(source=source, tag=tag, status=status):
        poll.sleep()
    src = status.Get_source()
    buf = bytearray(status.Get_count(MPI.BYTE))
    comm.Recv([buf, MPI.BYTE], source=src, tag=tag)
    return json.loads(buf.decode()), src
