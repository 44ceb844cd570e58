"""Images of the fields of a 2D problem (FOM and ROM states side by side).

A state of a problem with fields on a 2D grid is field-major, each field row-major over
``grid_shape = (ny, nx)`` with x varying fastest (docs/CONTRACTS.md, the ``Problem`` table;
the snapshot file's ``/grid``, docs/formats.md), so ``x.reshape(n_fields, ny, nx)[c]`` is
field ``c`` indexed ``[y, x]``. :func:`field_figure` draws such states as images on the
physical coordinates of the grid (``/grid/x`` and ``/grid/y``): one block of panels per field,
a row per source (FOM, Deep LSPG, POD-LSPG, ...) and a column per time, with one colour scale
and colour bar per field shared by its whole block, so that the sources compare by colour.
Used by ``mrom report`` (``states.png`` of a 2D problem) and the 2D studies in
``benchmarks/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fom.errors import InputError


def grid_axes(grid: Mapping[str, Any], grid_shape: Sequence[int]) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """The coordinates ``(x (nx,), y (ny,))`` of a 2D grid of shape ``(ny, nx)``.

    ``grid`` is a snapshot or results file's ``/grid`` (coordinates of the unknowns along each
    axis); without them the axes are the indices.

    Raises
    ------
    InputError
        If ``grid_shape`` is not 2D or a coordinate has another length.
    """
    if len(grid_shape) != 2:
        raise InputError(f"field images need a 2D grid, got grid_shape {tuple(grid_shape)}")
    ny, nx = (int(v) for v in grid_shape)
    out = []
    for name, n in (("x", nx), ("y", ny)):
        c = np.asarray(grid[name], dtype=np.float64).ravel() if name in grid else np.arange(n)
        if c.size != n:
            raise InputError(f"/grid/{name} has {c.size} values but the grid has {n} along "
                             f"{name} (grid_shape {(ny, nx)})")
        out.append(c.astype(np.float64))
    return out[0], out[1]


def field_figure(rows: Sequence[tuple[str, np.ndarray]], times: Sequence[float], *,
                 fields: Sequence[str], grid_shape: Sequence[int], grid: Mapping[str, Any],
                 show: Sequence[str] | None = None, title: str = "",
                 cmap: str = "viridis") -> Any:
    """Field images of several sources at several times.

    Parameters
    ----------
    rows : sequence of (label, states)
        One row of panels per source: its label and its states at ``times``, shape
        ``(len(times), N)`` with ``N = len(fields) * ny * nx``. NaN entries (a ROM that
        stopped before that time) leave the panel blank with the note "not computed".
    times : sequence of float
        The time of each column (titles).
    fields : sequence of str
        The problem's field names in state order.
    grid_shape : (ny, nx)
    grid : mapping
        ``{"x": (nx,), "y": (ny,)}``: the coordinates of the axes (:func:`grid_axes`).
    show : sequence of str, optional
        The fields to draw (default all), one block of ``len(rows)`` rows each.
    title : str
        Figure title.
    cmap : str
        Matplotlib colour map.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Unknown field names, or states of the wrong shape.
    """
    import matplotlib.pyplot as plt

    x, y = grid_axes(grid, grid_shape)
    ny, nx = y.size, x.size
    n_f = len(fields)
    show = list(fields if show is None else show)
    unknown = [f for f in show if f not in fields]
    if unknown or not show:
        raise InputError(f"unknown field(s) {unknown} (the fields are {list(fields)})")
    if not rows or not len(times):
        raise InputError("field images need at least one source and one time")
    images = []
    for label, states in rows:
        arr = np.asarray(states, dtype=np.float64)
        if arr.shape != (len(times), n_f * ny * nx):
            raise InputError(f"the states of {label!r} have shape {arr.shape}, expected "
                             f"({len(times)}, {n_f * ny * nx}) for {n_f} field(s) on a "
                             f"{ny} x {nx} grid")
        images.append(arr.reshape(len(times), n_f, ny, nx))
    n_rows, n_cols = len(rows) * len(show), len(times)
    aspect = (y[-1] - y[0]) / (x[-1] - x[0]) if nx > 1 and ny > 1 else 1.0
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(3.2 * n_cols + 1.0, (3.2 * aspect + 0.5) * n_rows))
    for b, name in enumerate(show):
        c = list(fields).index(name)
        lo, hi = colour_limits(np.stack([img[:, c] for img in images]))
        mesh = None
        for r, (label, _) in enumerate(rows):
            for k, t in enumerate(times):
                drawn = field_panel(axes[b * len(rows) + r, k], x, y, images[r][k, c],
                                    (lo, hi), f"{label}: {name}, t = {t:.3g}", ("x", "y"),
                                    cmap)
                mesh = drawn if drawn is not None else mesh
        if mesh is not None:
            fig.colorbar(mesh, ax=axes[b * len(rows):(b + 1) * len(rows), :].ravel().tolist(),
                         label=name, shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


def colour_limits(block: np.ndarray) -> tuple[float, float]:
    """One colour scale for the panels of a field: the finite values' range ((0, 1) when
    there are none), widened by 1/2 each way when it is a single value."""
    finite = block[np.isfinite(block)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def field_panel(ax: Any, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                limits: tuple[float, float], title: str, labels: tuple[str, str],
                cmap: str | None = None) -> Any:
    """One field image on its grid (``z`` of shape (ny, nx)) with the colour ``limits``,
    equal axes, ``title`` and the axis ``labels``; a panel whose values are not all finite
    (a ROM that stopped before) is left blank with the note "not computed". Returns the
    mesh for a colour bar, or None for a blank panel."""
    mesh = None
    if np.all(np.isfinite(z)):
        mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap=cmap, vmin=limits[0],
                             vmax=limits[1])
    else:
        ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize="small")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    return mesh


def save_figure(fig: Any, path: Any, dpi: int = 110, **kw: Any) -> Any:
    """Save a figure atomically (a temporary file beside ``path``, then renamed; the format
    from ``path``'s suffix, PNG without one) and close it; returns ``path``. ``kw`` go to
    ``savefig`` (e.g. ``bbox_inches``)."""
    import matplotlib.pyplot as plt

    from fom.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png", **kw)
    plt.close(fig)
    return path
