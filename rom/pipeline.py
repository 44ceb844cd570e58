"""The whole pipeline from one config: snapshots → autoencoder → ROMs → report.

``run(config)`` is ``mrom run CONFIG``; each stage skips work whose outputs already exist and
were made from the same inputs (snapshot files by their problem/solver/parameters, models by
their manifest, which records the snapshot checksum and all settings; ROM results likewise).
``demo()`` is ``mrom demo``: the same pipeline on a reduced 1D Burgers setting that finishes in
minutes on two cores.
"""

from __future__ import annotations

import os
from pathlib import Path

from fom.atomic import write_text_atomic
from fom.config import RunConfig, load_config
from fom.snapshots import snapshots_from_config

#: The reduced default problem of ``mrom demo``: the paper's Burgers problem and architecture,
#: a coarser 5 x 4 training grid, one latent dimension (p = 3), a short training budget.
DEMO_CONFIG = """\
# mrom demo: the paper's 1D Burgers problem on a reduced budget (design.md, problem 1).
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


def run(config: str | os.PathLike | RunConfig, *, progress: bool = True) -> Path:
    """Run every stage of a config and return the ROM results file (``mrom run CONFIG``)."""
    from autoencoder.train import train_from_config
    from rom.online import roms_from_config
    from rom.report import report

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    snapshots_from_config(cfg, progress=progress)
    train_from_config(cfg, progress=progress)
    results = roms_from_config(cfg, progress=progress)
    report(results)
    return results


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
    return DEMO_CONFIG.format(output_dir=Path(output_dir).as_posix(), train=train,
                              training=training)


def demo(output_dir: str | os.PathLike = "output/demo", *, progress: bool = True) -> Path:
    """``mrom demo``: the whole pipeline on a reduced 1D Burgers setting.

    Writes ``<output_dir>/demo.toml`` (a config a user can copy and edit) and runs it with
    :func:`run`: FOM snapshots on a 5 x 4 training grid, a p = 3 autoencoder of the paper's
    architecture trained for at most 100 epochs (7 minutes), Deep LSPG and POD-LSPG at the
    paper's two test parameters, the error table and figures in ``<output_dir>/report/``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "demo.toml"
    write_text_atomic(cfg_path, demo_config_text(out))
    return run(cfg_path, progress=progress)
