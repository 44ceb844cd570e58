"""Tables and figures from a ROM results file (``mrom report RESULTS``).

Prints a markdown table (method, p, test parameter, relative state error and projection error
of the trial manifold in percent, mean Gauss–Newton/Newton iterations per step, the sampled
rows of a hyper-reduced ROM, online wall time, status) and saves, with the Agg backend,

- ``states.png``: the state at several times, FOM against Deep LSPG and POD-LSPG (the paper's
  figure for 1D Burgers) and HR Deep LSPG if it was run, one panel per test parameter, at the
  smallest p run by both Deep LSPG and POD-LSPG (else the largest p run); for a problem on a
  2D grid (``/grid/y`` in the file) the fields as images at the first, middle and last time
  of the first test parameter (:func:`rom.plots.field_figure`);
- ``errors_vs_p.png``: relative state error in percent against p on log axes, one line per
  method, with the projection errors of the POD and decoder manifolds dotted (with a single
  p, one point per method in the middle of the axis);
- ``report.md``: the table, and for a problem with several fields (2D Burgers' u and v, the
  flame's T and mass fractions) a second table of the per-field errors: each field's relative
  trajectory error and its largest per-step relative error (docs/method.md, section 8).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .online import mean_iterations
from .results import ResultSet, RunRecord, method_parts, read_results

_STYLE = {"deep-lspg": ("tab:red", "o"), "deep-galerkin": ("tab:orange", "s"),
          "pod-lspg": ("tab:blue", "^"), "pod-galerkin": ("tab:cyan", "v"),
          "hr-deep-lspg": ("tab:purple", "D"), "hr-pod-lspg": ("tab:green", ">")}
_LABEL = {"deep-lspg": "Deep LSPG", "deep-galerkin": "Deep Galerkin", "pod-lspg": "POD-LSPG",
          "pod-galerkin": "POD-Galerkin", "hr-deep-lspg": "HR Deep LSPG",
          "hr-pod-lspg": "HR POD-LSPG"}
#: line styles of the ROMs in ``states.png``
_DASH = {"deep-lspg": "--", "pod-lspg": ":", "hr-deep-lspg": "-."}


def _fmt(v: float) -> str:
    """A relative error in percent with three significant digits (``1.35 %``)."""
    if not math.isfinite(v):
        return "—"
    pct = 100.0 * v
    if pct < 1e-3:
        return f"{pct:.2e} %"
    return f"{pct:#.3g}".removesuffix(".") + " %"  # 2.70 %, 14.1 %, 0.709 %, 100 %


def _wall(v: float) -> str:
    """Wall time in seconds; NaN (not recorded, e.g. in a sweep file) prints as a dash."""
    return "—" if not math.isfinite(v) else f"{v:.3f}"


def _samples(rec: RunRecord) -> str:
    """The sampled rows of a hyper-reduced run (and its stencil), a dash for the others."""
    n = rec.info.get("n_samples")
    if not rec.hyper_reduced or n is None:
        return "—"
    stencil = rec.info.get("n_stencil")
    return f"{n}" + (f" ({stencil})" if stencil is not None else "")


def _mu_label(rs: ResultSet, i: int) -> str:
    names = rs.param_names or tuple(f"mu{k + 1}" for k in range(rs.mu.shape[1]))
    return ", ".join(f"{n} = {v:g}" for n, v in zip(names, rs.mu[i], strict=True))


def error_table(rs: ResultSet) -> str:
    """The markdown table of every run and test parameter; ``samples`` gives a hyper-reduced
    ROM's sampled rows and, in parentheses, its stencil (the state entries it reads)."""
    lines = ["| method | p | mu | relative error | projection error | iterations/step | "
             "samples | wall (s) | status |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    n_t = rs.t.size
    for rec in sorted(rs.runs.values(), key=lambda r: (r.method, r.p)):
        its = mean_iterations(rec)
        for i in range(rs.mu.shape[0]):
            k = int(rec.steps[i])
            status = "ok" if k == n_t else f"failed at t = {rs.t[k]:.4g}" if k < n_t else "?"
            lines.append(
                f"| {_LABEL.get(rec.method, rec.method)} | {rec.p} | ({_mu_label(rs, i)}) | "
                f"{_fmt(rec.relative_error[i])} | {_fmt(rec.projection_error[i])} | "
                f"{its[i]:.2f} | {_samples(rec)} | {_wall(rec.wall_s[i])} | {status} |")
    return "\n".join(lines)


def field_error_table(rs: ResultSet) -> str:
    """The markdown table of the per-field errors, or ``""`` for a single field (or a file
    without them): per run and parameter, each field's relative trajectory error and, after
    them, each field's largest per-step relative error, in percent."""
    fields = rs.fields
    if len(fields) < 2:
        return ""
    heads = [*fields, *(f"max/step {f}" for f in fields)]
    lines = ["| method | p | mu | " + " | ".join(heads) + " |",
             "|---|---:|---|" + "---:|" * len(heads)]
    for rec in sorted(rs.runs.values(), key=lambda r: (r.method, r.p)):
        if rec.field_error is None or rec.max_step_field_error is None:
            continue
        for i in range(rs.mu.shape[0]):
            vals = [*rec.field_error[i], *rec.max_step_field_error[i]]
            lines.append(f"| {_LABEL.get(rec.method, rec.method)} | {rec.p} | "
                         f"({_mu_label(rs, i)}) | " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines)


def _plot_states(rs: ResultSet, path: Path, n_times: int = 4,
                 p: int | None = None) -> Path | None:
    import matplotlib.pyplot as plt

    if rs.reference is None:
        return None
    shown = {name: {r.p: r for r in rs.select(name) if r.states is not None}
             for name in _DASH}
    deep, pod = shown["deep-lspg"], shown["pod-lspg"]
    common = sorted(set(deep) & set(pod))
    if p is None:
        # the smallest p run by both (where the manifolds differ most), else the largest run
        p = common[0] if common else max(deep or pod or shown["hr-deep-lspg"], default=None)
    runs = [(name, by_p[p]) for name, by_p in shown.items() if p in by_p]
    if "y" in rs.grid:
        return _plot_state_fields(rs, runs, path)
    n_mu = rs.mu.shape[0]
    x = rs.grid.get("x", np.arange(rs.reference.shape[2]))
    idx = np.unique(np.linspace(0, rs.t.size - 1, n_times + 1).round().astype(int)[1:])
    fig, axes = plt.subplots(n_mu, 1, figsize=(8, 3.2 * n_mu), squeeze=False)
    for i in range(n_mu):
        ax = axes[i, 0]
        for j, n in enumerate(idx):
            ax.plot(x, rs.reference[i, n], color="k", lw=1.5,
                    label="FOM" if j == 0 else None)
            for name, rec in runs:
                if n < rec.steps[i]:
                    color, _ = _STYLE[name]
                    ax.plot(x, rec.states[i, n], color=color, lw=1.2, ls=_DASH[name],
                            label=f"{_LABEL[name]} (p = {rec.p})" if j == 0 else None)
        ax.set_title(f"{_mu_label(rs, i)};  t = " + ", ".join(f"{rs.t[n]:.3g}" for n in idx))
        ax.set_xlabel("x")
        ax.set_ylabel("state")
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    from .plots import save_figure
    return save_figure(fig, path, dpi=120)


def _plot_state_fields(rs: ResultSet, runs: list[tuple[str, Any]], path: Path) -> Path:
    """``states.png`` of a 2D problem: FOM and the runs' fields at the first, middle and last
    time of the first test parameter."""
    from .plots import field_figure, save_figure

    assert rs.reference is not None
    ny, nx = np.size(rs.grid["y"]), np.size(rs.grid.get("x", []))
    n_fields = rs.reference.shape[2] // max(ny * nx, 1)
    fields = rs.fields if len(rs.fields) == n_fields else tuple(
        f"field {c}" for c in range(n_fields))
    idx = sorted({0, (rs.t.size - 1) // 2, rs.t.size - 1})
    rows = [("FOM", rs.reference[0, idx])]
    rows += [(f"{_LABEL[name]} (p = {rec.p})", rec.states[0, idx]) for name, rec in runs]
    fig = field_figure(rows, rs.t[idx], fields=fields, grid_shape=(ny, nx), grid=rs.grid,
                       title=_mu_label(rs, 0))
    return save_figure(fig, path, dpi=100)


def errors_figure(rs: ResultSet) -> Any:
    """The figure of ``errors_vs_p.png``: relative state errors (percent) against p, one
    panel per test parameter; with a single p, one point per method on an axis from p - 1 to
    p + 1 with one tick."""
    import matplotlib.pyplot as plt

    n_mu = rs.mu.shape[0]
    fig, axes = plt.subplots(1, n_mu, figsize=(5.5 * n_mu, 4), squeeze=False)
    methods = sorted({r.method for r in rs.runs.values()}, key=lambda m: list(_STYLE).index(m)
                     if m in _STYLE else 99)
    all_p = sorted({r.p for r in rs.runs.values()})
    for i in range(n_mu):
        ax = axes[0, i]
        proj_done = set()
        for m in methods:
            recs = rs.select(m)
            ps = [r.p for r in recs]
            color, marker = _STYLE.get(m, ("gray", "x"))
            err = [100.0 * r.relative_error[i] for r in recs]
            ax.plot(ps, err, color=color, marker=marker, label=_LABEL.get(m, m))
            kind = "decoder" if method_parts(m)[1] == "deep" else "POD"
            if kind not in proj_done:
                proj_done.add(kind)
                ax.plot(ps, [100.0 * r.projection_error[i] for r in recs], color=color,
                        ls=":", marker=marker, mfc="none", label=f"{kind} projection")
        ax.set_yscale("log")
        if len(all_p) == 1:  # not a sliver of an axis around one point
            ax.set_xlim(all_p[0] - 1, all_p[0] + 1)
            ax.set_xticks(all_p)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("latent dimension p")
        ax.set_ylabel("relative state error (%)")
        ax.set_title(_mu_label(rs, i))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _plot_errors(rs: ResultSet, path: Path) -> Path:

    from .plots import save_figure
    return save_figure(errors_figure(rs), path, dpi=120)


#: The files :func:`report` writes into its folder (``states.png`` only with FOM states).
REPORT_FILES = ("report.md", "states.png", "errors_vs_p.png")


def report_files(folder: str | os.PathLike) -> list[Path]:
    """The files of :data:`REPORT_FILES` present in a report folder."""
    return [Path(folder) / name for name in REPORT_FILES if (Path(folder) / name).is_file()]


def report(results_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
           quiet: bool = False, state_p: int | None = None) -> Path:
    """Print the error table and save the figures (``mrom report RESULTS``).

    Parameters
    ----------
    results_path : path
        A results file from :func:`rom.online.roms_from_config`.
    out_dir : path, optional
        Folder for ``report.md``, ``states.png`` and ``errors_vs_p.png``; default ``report/``
        beside the results file.
    quiet : bool
        Do not print the table.
    state_p : int, optional
        Latent dimension of the ROMs in ``states.png``; default: the smallest one run by both
        Deep LSPG and POD-LSPG.

    Returns
    -------
    Path
        The folder written.
    """
    import matplotlib

    matplotlib.use("Agg")
    from fom.atomic import make_output_folder, write_text_atomic

    rs = read_results(results_path)
    out = Path(out_dir) if out_dir is not None else Path(results_path).parent / "report"
    make_output_folder(out, "report folder")
    table = error_table(rs)
    if per_field := field_error_table(rs):
        table += "\n\nErrors per field: relative over the trajectory, and the largest " \
                 "relative error of a step\n\n" + per_field
    if not quiet:
        print(table)
    md, states, errors = (out / name for name in REPORT_FILES)
    write_text_atomic(md, f"# ROM results: {results_path}\n\n{table}\n")
    _plot_states(rs, states, p=state_p)
    _plot_errors(rs, errors)
    return out
