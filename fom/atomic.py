"""Atomic file output: write to a temporary file in the target folder, then rename.

A reader never sees a half-written file: either the old file (or none) or the complete new
one. If the writer fails or is killed, at most a ``*.tmp-*`` file is left behind, which is
never mistaken for a result. The temporary file is flushed to disk (``fsync``) before the
rename, so a file that exists after a node crash is complete too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


def _probe(folder: Path) -> str | None:
    """Create and delete a temporary file in ``folder``; the OS's reason if that fails.

    A real attempt, not ``os.access``: that says yes to root everywhere, also in ``/proc``.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mrom-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def _check_parent(path: Path) -> Path:
    """The parent folder of the file ``path``, after checking that it exists as a folder."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"cannot write {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is not a folder")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    return parent


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that a file can be written there.

    The parent folder must exist, be a folder and accept a new file (tried by creating and
    deleting a temporary file); ``path`` itself must not be a folder. Nothing is left behind.

    Raises
    ------
    InputError
        Naming the file and the reason.
    """
    path = Path(path)
    parent = _check_parent(path)
    if (reason := _probe(parent)) is not None:
        raise InputError(f"cannot write {path}: folder {parent} is not writable ({reason})")
    return path


def check_output_folder(folder: str | os.PathLike, what: str = "") -> Path:
    """Check that ``folder`` is a writable folder or can be created as one; create nothing.

    The nearest existing ancestor must be a folder that accepts new files (tried by creating
    and deleting a temporary file in it). Every command calls this (or
    :func:`check_writable_dir` for a single file) for each output location before it does
    any work, so that an output that cannot be written is a one-line input error instead of a
    failure after minutes of computation.

    Parameters
    ----------
    folder : path
    what : str, optional
        Prefix of the error message naming where the folder was given (``"run.toml
        output_dir"``, ``"-o"``).

    Raises
    ------
    InputError
    """
    folder = Path(folder)
    prefix = f"{what}: " if what else ""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{prefix}cannot create folder {folder}: a file of that name exists")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{prefix}cannot create folder {folder}: {existing} is not a folder")
    if (reason := _probe(existing)) is not None:
        where = "it" if existing == folder else f"folder {existing}"
        raise InputError(f"{prefix}cannot write in folder {folder}: {where} is not writable "
                         f"({reason})")
    return folder


def make_output_folder(folder: str | os.PathLike, what: str = "") -> Path:
    """:func:`check_output_folder`, then create the folder (and its parents) if missing."""
    folder = check_output_folder(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        prefix = f"{what}: " if what else ""
        raise InputError(f"{prefix}cannot create folder {folder}: {exc.strerror}") from None
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk; best effort where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Examples
    --------
    >>> with atomic_path("out.h5") as tmp:          # doctest: +SKIP
    ...     write_hdf5(tmp)
    """
    path = Path(path)
    parent = _check_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: folder {parent} is not writable "
                         f"({exc.strerror})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent if str(path.parent) else Path("."), directory=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
