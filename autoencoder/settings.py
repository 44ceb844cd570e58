"""Config sections ``[autoencoder]`` and ``[training]`` of the convolutional autoencoder.

The defaults of ``[autoencoder]`` are the paper's Burgers architecture (Lee & Carlberg 2019,
section 6.1): four 5 x 5 convolutions with 8, 16, 32, 64 filters and strides 1, 2, 2, 2, ELU,
a dense layer to ``p``; the decoder mirrors it. The defaults of ``[training]`` are the paper's
optimiser settings (Adam, learning rate 1e-4, batches of 20, up to 1000 epochs, early stopping
with patience 100), except that the validation set is whole trajectories held out from training
(every fifth training parameter) rather than the paper's random 10 % of the snapshots, whose
time neighbours are trained on. ``examples/burgers1d.toml`` overrides them with the recipe that
``benchmarks/select_recipe.py`` picks; ``examples/burgers1d_paper.toml`` keeps the paper's.
"""

from __future__ import annotations

from typing import Any

from fom.config import (
    Field,
    at_least,
    fraction,
    list_of,
    non_negative,
    one_of,
    parse_section,
    positive,
)
from fom.errors import InputError

ACTIVATIONS = ("elu", "relu", "tanh", "sigmoid", "softplus", "silu", "linear")


def _int_or_list(v: Any) -> str | None:
    if isinstance(v, list):
        return list_of(int, at_least(1))(v)
    return None if v >= 1 else "must be >= 1"


def _param_list(v: Any) -> str | None:
    for i, mu in enumerate(v):
        if not (isinstance(mu, list) and mu and all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in mu)):
            return f"entry {i} must be a list of numbers (a parameter vector)"
    return None


AUTOENCODER_SCHEMA: dict[str, Field] = {
    "latent_dims": Field(list, [3], list_of(int, at_least(1)),
                         doc="latent dimensions p, one model each"),
    "dims": Field(int, 2, lambda v: None if v in (1, 2) else "must be 1 or 2",
                  doc="1 (Conv1D) or 2 (Conv2D) convolutions"),
    "filters": Field(list, [8, 16, 32, 64], list_of(int, at_least(1)),
                     doc="encoder filters per conv layer (decoder mirrors them)"),
    "kernel_size": Field((int, list), 5, _int_or_list,
                         doc="kernel size (one value or one per conv layer)"),
    "strides": Field(list, [1, 2, 2, 2], list_of(int, at_least(1)),
                     doc="encoder strides per conv layer (decoder mirrors them)"),
    "padding": Field(str, "same", one_of("same", "valid"), doc="conv padding"),
    "image_size": Field(list, [], list_of(int, at_least(1), min_len=0),
                        doc="spatial size of the autoencoder's image, [H, W] (dims = 2) or [L] "
                            "(dims = 1), at least the problem's: its grid is centred in it and "
                            "the rest padded (deviation target: 0; raw: the problem's "
                            "boundary values, else 0); [] = the problem's image_shape"),
    "activation": Field(str, "elu", one_of(*ACTIVATIONS), doc="hidden-layer activation"),
    "latent_activation": Field(str, "elu", one_of(*ACTIVATIONS),
                               doc="activation of the encoder's last (dense) layer (ignored "
                                   "when variational: mean and log-variance are linear)"),
    "output_activation": Field(str, "linear", one_of(*ACTIVATIONS),
                               doc="activation of the decoder's last layer"),
    "target": Field(str, "deviation", one_of("deviation", "raw"),
                    doc="train on x - x0 (paper section 5.3) or on raw states"),
    "scaling": Field(str, "minmax", one_of("minmax", "maxabs"),
                     doc="map of the targets to the images, per channel: 'minmax' to [0, 1] "
                         "(the paper's), 'maxabs' divided by the largest magnitude (in [-1, "
                         "1], zero stays zero)"),
    "variational": Field(bool, False, doc="variational autoencoder (ELBO training)"),
    "decoder": Field(str, "mirror", one_of("mirror", "local"),
                     doc="the decoder: 'mirror' (transposed convolutions mirroring the encoder, "
                         "the paper's) or 'local' (dims = 2: a coarse hidden grid and a "
                         "locally connected output layer, each image entry its own weights)"),
    "local_features": Field(int, 16, at_least(1),
                            doc="decoder = 'local': channels of the dense layer's feature map"),
    "local_channels": Field(int, 8, at_least(1),
                            doc="decoder = 'local': channels C of the hidden grid"),
    "local_window": Field(int, 3, at_least(1),
                          doc="decoder = 'local': each image entry reads window x window "
                              "hidden cells around it"),
    "local_stride": Field(int, 2, at_least(1),
                          doc="decoder = 'local': image pixels per hidden cell per direction"),
    "local_activation": Field(str, "silu", one_of(*ACTIVATIONS),
                              doc="decoder = 'local': activation of the hidden grid"),
    "kl_weight": Field(float, 1e-4, non_negative, doc="beta of the ELBO's KL term"),
}

TRAINING_SCHEMA: dict[str, Field] = {
    "batch_size": Field(int, 20, at_least(1), doc="mini-batch size"),
    "learning_rate": Field(float, 1e-4, positive, doc="Adam's (initial) learning rate"),
    "lr_schedule": Field(str, "constant", one_of("constant", "cosine", "plateau"),
                         doc="learning-rate schedule per epoch"),
    "lr_min": Field(float, 1e-6, positive, doc="floor of the learning rate (schedules)"),
    "plateau_factor": Field(float, 0.5, fraction, doc="lr factor on a plateau"),
    "plateau_patience": Field(int, 10, at_least(1), doc="epochs without progress before"
                              " the plateau schedule lowers the lr"),
    "epochs": Field(int, 1000, at_least(1), doc="maximum number of epochs"),
    "patience": Field(int, 100, at_least(1), doc="early-stopping patience (epochs of no "
                      "better validation loss; no early stopping without validation)"),
    "validation_every": Field(int, 5, at_least(0),
                              doc="hold out whole trajectories 1, 1 + k, 1 + 2k, ... of the "
                                  "training file for validation (k = this; 0 = none)"),
    "validation_params": Field(list, [], _param_list,
                               doc="parameters of the training file held out for validation "
                                   "(overrides validation_every)"),
    "snapshot_stride": Field(int, 1, at_least(1),
                             doc="train on every k-th time step of each training trajectory"),
    "seed": Field(int, 0, at_least(0), doc="seed of initialization, split and shuffling"),
    "n_seeds": Field(int, 1, at_least(1),
                     doc="train each model with the seeds seed, seed + 1, ..., and keep the one "
                         "whose largest Deep LSPG error at the check trajectories (training "
                         "data) is lowest (mrom train; 1 = one model, no check)"),
    "seed_check_every": Field(int, 1, at_least(1),
                              doc="the check trajectories of n_seeds > 1: every k-th of the "
                                  "trajectories trained on (k = this; choose k coprime with "
                                  "the sizes of a parameter grid, or the check sees only some "
                                  "of its columns)"),
    "checkpoint_every": Field(int, 5, at_least(1), doc="epochs between checkpoints"),
    "max_wall_s": Field(float, 0.0, non_negative,
                        doc="wall-time budget per model and run in seconds (0 = none): the "
                            "model is left incomplete and the next run continues it"),
    "initial_state_weight": Field(float, 0.0, non_negative,
                                  doc="weight of the initial states' reconstruction error "
                                      "(the anchor of x_ref, section 5.3) in the loss"),
    "latent_smoothness_weight": Field(
        float, 0.0, non_negative,
        doc="weight of the latent-smoothness term: the mean over training steps n of "
            "|z(n+k) - 2 z(n) + z(n-k)|^2 / (|z(n+k) - z(n)|^2 + |z(n) - z(n-k)|^2), z = "
            "the encoder's code, k = snapshot_stride (a scale-free measure of uneven speed "
            "along the trajectories; not with residual_weight or variational)"),
    "residual_weight": Field(float, 0.0, non_negative,
                             doc="weight of the linearized time-discrete residual of the "
                                 "reconstructed training trajectories in the loss "
                                 "(autoencoder/residual.py)"),
    "residual_projection": Field(str, "none", one_of("none", "tangent"),
                                 doc="what the residual term measures: the whole linearized "
                                     "residual r, or (tangent) only its part in the span of "
                                     "(dr/dx) dg/dz at the step's code, the part Gauss-Newton "
                                     "acts on (autoencoder/residual.py, equation (4))"),
    "residual_normalization": Field(str, "none", one_of("none", "trajectory", "step"),
                                    doc="scale of each step's residual in the residual term: "
                                        "none; (trajectory) divided by the root mean square "
                                        "increment x^n - x^(n-1) of its trajectory; (step) by "
                                        "its own step's increment (a step at rest weighs 100 "
                                        "times the mean step); each relative to the mean, "
                                        "so a phase bias counts in units of the step "
                                        "(autoencoder/residual.py, equations (5) and (6))"),
    "hard_example_exponent": Field(float, 0.0, non_negative,
                                   doc="q of the hard-example weights (m_i / mean m)^q of the "
                                       "samples, m_i their current error (0 = equal weights)"),
    "hard_example_measure": Field(str, "error", one_of("error", "residual"),
                                  doc="what m_i of the hard-example weights measures: the "
                                      "sample's reconstruction error, or (with "
                                      "residual_weight > 0) its step's linearized residual"),
    "hard_example_terms": Field(str, "all", one_of("all", "residual"),
                                doc="the loss terms the hard-example weights scale: all, or "
                                    "only the residual term (reconstruction unweighted)"),
    "hard_example_max_weight": Field(float, 50.0, at_least(1.0),
                                     doc="clip of the hard-example weights to [1/w, w]"),
    "hard_example_errors": Field(str, "recomputed", one_of("recomputed", "training_pass"),
                                 doc="where the errors m_i of the hard-example weights come "
                                     "from: a pass over the training samples before each "
                                     "epoch, or each sample's error in its optimizer step of "
                                     "the previous epoch (before that step's update; no extra "
                                     "pass, a third less time per epoch on the 2D example; "
                                     "not with the residual term; a loss spike then weights "
                                     "the next epoch's samples from the spike: on the 2D "
                                     "example three of four runs diverged and were rolled "
                                     "back)"),
    "hard_example_every": Field(int, 1, at_least(1),
                                doc="with hard_example_errors = 'recomputed': recompute the "
                                    "errors m_i before every k-th epoch only, the epochs "
                                    "between reusing them (the pass costs about a third of an "
                                    "epoch on the 2D example; the errors change slowly)"),
    "divergence_factor": Field(float, 100.0, non_negative,
                               doc="an epoch whose training loss exceeds this times the "
                                   "stage's lowest is rolled back and rerun at half the "
                                   "learning rate (0 = never)"),
    "jit_compile": Field(bool, False,
                         doc="compile each optimizer step with XLA (same loss, other rounding: "
                             "the weights differ from a run without it; 2.2x faster on the "
                             "locally connected 2D decoder, benchmarks/training_speed.py)"),
    "keep_best": Field(bool, True, doc="end with the weights of the best validation loss "
                                       "(else the last epoch's; always the last without "
                                       "validation trajectories)"),
    "finetune": Field(list, [], lambda v: list_of(dict, min_len=0)(v),
                      doc="further training stages ([[training.finetune]] tables), each "
                          "starting from the previous stage's weights (training_stages)"),
}

#: ``[training]`` keys that control a run but not what it computes: a model or checkpoint
#: trained with other values of them is the same model (see ``autoencoder.train``).
RUN_CONTROL_KEYS = ("max_wall_s", "checkpoint_every")

#: ``[training]`` keys that a ``[[training.finetune]]`` stage may not change.
ALL_STAGES_KEYS = ("validation_every", "validation_params", "n_seeds", "seed_check_every")

#: Keys a ``[[training.finetune]]`` stage may set besides the ``[training]`` keys.
STAGE_ONLY_SCHEMA: dict[str, Field] = {
    "latent_dims": Field(list, [], list_of(int, at_least(1), min_len=0),
                         doc="latent dimensions the stage applies to (empty = all)"),
}


def training_stages(tr: dict[str, Any], where: str) -> list[tuple[dict[str, Any], list[int]]]:
    """The training stages of a validated ``[training]`` section.

    Stage 0 is ``[training]`` itself; each ``[[training.finetune]]`` table is one more stage
    that inherits every ``[training]`` key it does not set (a fresh Adam, its own epochs,
    schedule and loss terms) and continues from the previous stage's weights. Returns
    ``(settings, latent_dims)`` per stage; an empty ``latent_dims`` means all.
    """
    base = {k: v for k, v in tr.items() if k != "finetune"}
    schema = {k: f for k, f in TRAINING_SCHEMA.items() if k != "finetune"}
    stages: list[tuple[dict[str, Any], list[int]]] = [(base, [])]
    for i, entry in enumerate(tr["finetune"]):
        here = f"{where} finetune[{i}]"
        own = parse_section({k: v for k, v in entry.items() if k in STAGE_ONLY_SCHEMA},
                            STAGE_ONLY_SCHEMA, here)
        rest = {k: v for k, v in entry.items() if k not in STAGE_ONLY_SCHEMA}
        unknown = sorted(set(rest) - set(schema))
        if unknown:
            raise InputError(f"{here}: unknown key '{unknown[0]}' (known: "
                             f"{', '.join([*schema, *STAGE_ONLY_SCHEMA])})")
        for key in ALL_STAGES_KEYS:
            if key in rest:
                raise InputError(f"{here} {key}: set it in [training] only (it holds for "
                                 "the whole model, every stage)")
        stages.append((parse_section({**base, **rest}, schema, here), own["latent_dims"]))
    for i, (st, _) in enumerate(stages):
        here = where if i == 0 else f"{where} finetune[{i - 1}]"
        # the keys that act on the residual term only, and their value without it
        for key, off in (("hard_example_measure", "error"), ("hard_example_terms", "all"),
                         ("residual_projection", "none"),
                         ("residual_normalization", "none")):
            if st[key] != off and st["residual_weight"] == 0:
                raise InputError(f"{here} {key}: {st[key]!r} needs residual_weight > 0 "
                                 "(the residual term)")
        if st["hard_example_errors"] == "training_pass" and st["residual_weight"] > 0:
            raise InputError(f"{here} hard_example_errors: 'training_pass' is not available "
                             "with residual_weight > 0 (use 'recomputed')")
        if st["hard_example_every"] > 1 and st["hard_example_errors"] != "recomputed":
            raise InputError(f"{here} hard_example_every: {st['hard_example_every']} needs "
                             "hard_example_errors = 'recomputed'")
        if st["latent_smoothness_weight"] > 0 and st["residual_weight"] > 0:
            raise InputError(f"{here} latent_smoothness_weight: not with residual_weight > 0 "
                             "in the same stage (use it in another stage)")
    return stages


def check_architecture(ae: dict[str, Any], where: str) -> dict[str, Any]:
    """Cross-field checks of a validated ``[autoencoder]`` section; returns it normalized."""
    n = len(ae["filters"])
    if len(ae["strides"]) != n:
        raise InputError(f"{where} strides: must have one entry per filter ({n}), "
                         f"got {ae['strides']!r}")
    ks = ae["kernel_size"]
    ks = [ks] * n if isinstance(ks, int) else list(ks)
    if len(ks) != n:
        raise InputError(f"{where} kernel_size: must be one value or {n} values, got {ks!r}")
    if ae["image_size"] and len(ae["image_size"]) != ae["dims"]:
        raise InputError(f"{where} image_size: must have {ae['dims']} entr"
                         f"{'y' if ae['dims'] == 1 else 'ies'} (dims = {ae['dims']}), got "
                         f"{ae['image_size']!r}")
    if ae["decoder"] == "local" and ae["dims"] != 2:
        raise InputError(f"{where} decoder: 'local' needs dims = 2, got dims = {ae['dims']}")
    out = dict(ae)
    out["kernel_size"] = ks
    return out
