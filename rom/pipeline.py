"""The whole pipeline from one config: snapshots → autoencoder → ROMs → report.

``run(config)`` is ``mrom run CONFIG``: it first checks every section of the config and the
output folder (so a bad key or an output that cannot be written fails in a second, before any
work), then runs the stages; each stage skips work whose outputs already exist and were made
from the same inputs (snapshot files by their problem/solver/parameters, models by their
manifest, which records the snapshot checksum and all settings; ROM results likewise).
``demo()`` is ``mrom demo``: the same pipeline on a reduced 1D Burgers setting that finishes in
minutes on two cores. Both return a :class:`PipelineOutputs` naming every file they made.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from fom.atomic import check_output_folder, make_output_folder, write_text_atomic
from fom.config import RunConfig, config_from_data, load_config
from fom.snapshots import snapshot_sets, snapshots_from_config

#: The reduced default problem of ``mrom demo``: the paper's Burgers problem and architecture,
#: a coarser 5 x 4 training grid, one latent dimension (p = 3), a short training budget.
DEMO_CONFIG = """\
# mrom demo: the paper's 1D Burgers problem (docs/problems.md) on a reduced budget.
# Every key: docs/config.md or `mrom config-keys`. Run again: mrom run {config}
output_dir = "{output_dir}"

[problem]
name = "burgers1d"

[snapshots]
train = [{train}]
test = [[4.3, 0.021], [5.15, 0.0285]]

[autoencoder]
latent_dims = [3]

[training]
{training}

[rom]
methods = ["deep-lspg", "pod-lspg"]
"""


@dataclass
class PipelineOutputs:
    """Every file a pipeline run made or kept up to date (``mrom run`` / ``mrom demo``).

    Attributes
    ----------
    config : Path
        The config that was run (for the demo, the generated ``demo.toml``).
    snapshots : list of Path
        The snapshot files (training, test).
    models : list of Path
        The trained-model folders, one per latent dimension.
    results : Path
        The ROM results file.
    report : Path
        The report folder.
    figures : list of Path
        The files in it (``report.md``, ``states.png``, ``errors_vs_p.png``).
    next_steps : list of str
        Commands to try next.
    sample_mesh : Path or None
        The sample-mesh file of the hyper-reduced ROMs (None without them).
    """

    config: Path
    snapshots: list[Path]
    models: list[Path]
    results: Path
    report: Path
    figures: list[Path] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    sample_mesh: Path | None = None

    def summary(self) -> str:
        """The lines the CLI prints at the end of a run."""
        rows = [("config", [self.config]), ("snapshots", self.snapshots),
                ("models", self.models),
                ("sample mesh", [self.sample_mesh] if self.sample_mesh else []),
                ("ROM results", [self.results]),
                ("report", [self.report, *self.figures])]
        lines = ["outputs:"]
        for label, paths in rows:
            for i, path in enumerate(paths):
                lines.append(f"  {label if i == 0 else '':<12} {path}")
        lines += [f"next: {step}" for step in self.next_steps]
        return "\n".join(lines)


def check_run_config(cfg: RunConfig) -> None:
    """Validate every section :func:`run` uses and its output folder, creating nothing.

    ``[problem]``, ``[snapshots]`` (with every parameter set), ``[autoencoder]``,
    ``[training]`` (with its fine-tuning stages), ``[rom]``, ``[hyperreduction]`` (with the
    sample-mesh file's location) and ``output_dir``.

    Raises
    ------
    fom.errors.InputError
        Naming the file, section and key at fault.
    """
    from autoencoder.train import settings_from_config
    from rom.online import rom_settings, uses_hyperreduction
    from rom.sample_mesh import check_mesh_output, hyperreduction_settings

    problem, _ = snapshot_sets(cfg)
    settings_from_config(cfg)
    if uses_hyperreduction(rom_settings(cfg)) or cfg.sections.get("hyperreduction"):
        check_mesh_output(cfg, hyperreduction_settings(cfg, problem))


def run(config: str | os.PathLike | RunConfig, *, progress: bool = True,
        jobs: int = 1) -> PipelineOutputs:
    """Run every stage of a config (``mrom run CONFIG``) and name what it made.

    Every input is checked first (:func:`check_run_config`); nothing is written before.
    ``jobs``: seeds trained at once with ``[training] n_seeds > 1``
    (:func:`rom.seed_selection.train_models`).
    """
    from rom.online import rom_settings, roms_from_config, uses_hyperreduction
    from rom.report import report, report_files
    from rom.sample_mesh import sample_mesh_from_config
    from rom.seed_selection import train_models

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    check_run_config(cfg)
    snapshots = snapshots_from_config(cfg, progress=progress)
    models = train_models(cfg, progress=progress, jobs=jobs)
    mesh = (sample_mesh_from_config(cfg, progress, log=print if progress else None)
            if uses_hyperreduction(rom_settings(cfg)) else None)
    results = roms_from_config(cfg, progress=progress)
    folder = report(results)
    steps = [f"add latent dimensions to [autoencoder] latent_dims in {cfg.path} and run "
             f"mrom run {cfg.path} again (only the new models train)"]
    if cfg.sections.get("sweep"):
        steps.append(f"mrom sweep {cfg.path}  (the [sweep] section: many parameters)")
    return PipelineOutputs(cfg.path, snapshots, models, results, folder,
                           report_files(folder), steps, mesh)


def demo_config_text(output_dir: str | os.PathLike) -> str:
    """The TOML text of the ``mrom demo`` config, writing into ``output_dir``."""
    import numpy as np

    mu1 = np.linspace(4.25, 5.5, 5)
    mu2 = np.linspace(0.015, 0.03, 4)
    train = ", ".join(f"[{a:.6g}, {b:.6g}]" for a in mu1 for b in mu2)
    training = "\n".join([
        "batch_size = 64",
        "learning_rate = 2e-3",
        'lr_schedule = "cosine"',
        "lr_min = 1e-5",
        "epochs = 100",
        "patience = 30",
        "initial_state_weight = 10.0",
    ])
    out = Path(output_dir).as_posix()
    return DEMO_CONFIG.format(output_dir=out, config=f"{out}/demo.toml", train=train,
                              training=training)


def demo(output_dir: str | os.PathLike = "output/demo", *,
         progress: bool = True) -> PipelineOutputs:
    """``mrom demo``: the whole pipeline on a reduced 1D Burgers setting.

    Writes ``<output_dir>/demo.toml`` (a config a user can copy and edit) and runs it with
    :func:`run`: FOM snapshots on a 5 x 4 training grid, a p = 3 autoencoder of the paper's
    architecture trained for at most 100 epochs (early stopping on the validation
    trajectories, every fifth training parameter held out), Deep LSPG and POD-LSPG at the
    paper's two test parameters, the error table and figures in ``<output_dir>/report/``.
    """
    out = check_output_folder(output_dir, "demo output folder")
    cfg_path = out / "demo.toml"
    text = demo_config_text(out)
    check_run_config(config_from_data(cfg_path, tomllib.loads(text)))  # before writing anything
    make_output_folder(out, "demo output folder")
    write_text_atomic(cfg_path, text)
    outputs = run(cfg_path, progress=progress)
    outputs.next_steps = [
        f"edit {cfg_path} (e.g. [autoencoder] latent_dims = [3, 5]) and run: mrom run "
        f"{cfg_path}",
        "mrom run examples/burgers1d.toml --jobs 2  (the paper's study at p = 3, two "
        "seeds trained at once and the better kept: about 10 min on 2 cores with "
        "AVX-512, about 21 min on a CPU with AVX2 only; docs/problems.md)",
    ]
    return outputs
