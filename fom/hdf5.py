"""Opening a user's HDF5 file for reading, with one-line errors (shared by every reader)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from .errors import InputError


def open_for_reading(path: str | os.PathLike, what: str) -> h5py.File:
    """Open ``path`` read-only; ``what`` names the kind of file in the error messages.

    Raises
    ------
    InputError
        If the file does not exist or is not a readable HDF5 file (truncated or corrupt).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise InputError(f"{path} is not a readable HDF5 file (truncated or corrupt?)") from None
