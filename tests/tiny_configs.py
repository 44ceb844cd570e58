"""The tiny whole-pipeline config shared by the pipeline and ROM-sweep tests.

64 cells, 50 steps, three training parameters and a two-layer autoencoder with p = 2 trained
for 2 epochs: every stage runs in seconds. The ROMs are not accurate; the tests check wiring,
files and exact agreements, not errors.
"""

from __future__ import annotations

TINY_RUN = """\
output_dir = "{output_dir}"

[problem]
name = "burgers1d"
n_cells = 64
t_final = 3.5

[snapshots]
train = [[4.25, 0.015], [5.5, 0.03], [4.8, 0.022]]
test = [[4.3, 0.021]]

[autoencoder]
latent_dims = [2]
filters = [4, 8]
strides = [2, 2]

[training]
batch_size = 32
learning_rate = 2e-3
epochs = 2

[rom]
{rom}
{extra}"""


def tiny_config(output_dir: str, rom: str = 'methods = ["deep-lspg", "pod-lspg"]',
                extra: str = "") -> str:
    """The config text; ``extra`` is appended (for example a ``[sweep]`` section)."""
    return TINY_RUN.format(output_dir=output_dir, rom=rom, extra=extra)
