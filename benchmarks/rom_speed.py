"""Deep LSPG online speed: the decoder on numba kernels against TensorFlow's autodiff.

One Deep LSPG run of 1D Burgers (docs/problems.md, problem 1) with the same driver
(:func:`rom.solve_rom`), the same model and the same options, twice:

* numba: the trained manifold's exported kernels (``decode_with_jacobian`` in one
  forward-mode pass), as ``mrom rom`` runs it;
* TensorFlow: the Keras decoder (float64, same weights) evaluated per Gauss–Newton iterate by a
  ``tf.function`` returning ``g`` and ``GradientTape.jacobian`` — the way PERFORM and the
  paper's code get the decoder Jacobian.

Prints both wall times, the ratio, the iteration counts and the largest difference between the
two trajectories (round-off: the two decoders agree to ~1e-15).

    python benchmarks/rom_speed.py [--model-dir DIR] [--t-final T] [--threads N] [--json PATH]

``--model-dir`` defaults to ``output/burgers1d/models/p3`` when that model is complete; without
a trained model a paper-architecture decoder with Glorot weights (p = 3) is used (the timing is
the same; the ROM is not accurate). ``--json PATH`` writes ``{"numba_s", "tf_s", "speedup",
...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

import autoencoder  # noqa: E402, F401  (before TensorFlow starts: autoencoder/__init__.py)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "output" / "burgers1d" / "models" / "p3"
PAPER = dict(filters=[8, 16, 32, 64], kernel_size=[5, 5, 5, 5], strides=[1, 2, 2, 2],
             padding="same", activation="elu", latent_activation="elu",
             output_activation="linear", variational=False, target="deviation",
             kl_weight=0.0, dims=2)


def machine() -> str:
    from fom_speed import cpu_model

    return (f"{platform.node()} {cpu_model()}, {os.cpu_count()} cpus, Python "
            f"{platform.python_version()}, numpy {np.__version__}")


class TFDecoder:
    """The TrainedManifold interface with ``decode``/``decode_with_jacobian`` done by
    TensorFlow (unscaling and prolongation as in the numba kernels); the encoder and the
    reference state are the numba manifold's (they are not in the online loop)."""

    def __init__(self, numba_manifold, keras_decoder) -> None:
        import tensorflow as tf

        self.base = numba_manifold
        self.p, self.n_dofs, self.target = numba_manifold.p, numba_manifold.n_dofs, \
            numba_manifold.target
        self.restriction, self.scaling = numba_manifold.restriction, numba_manifold.scaling
        model = keras_decoder

        @tf.function
        def g_and_jac(zt):
            with tf.GradientTape() as tape:
                tape.watch(zt)
                y = tf.reshape(model(zt), [-1])
            return y, tape.jacobian(y, zt)

        self._fn = g_and_jac
        self._tf = tf

    def decode_with_jacobian(self, z):
        y, jac = self._fn(self._tf.constant(np.asarray(z, dtype=np.float64)[None]))
        r, sc = self.restriction, self.scaling
        g = r.prolong(sc.unscale_image(y.numpy().reshape(r.image_shape)))
        jac = jac.numpy().reshape(*r.image_shape, self.p) * sc.range[:, None]
        return g, jac.reshape(-1, self.p)[r.pix]

    def decode(self, z):
        return self.decode_with_jacobian(z)[0]

    def decode_rows(self, z, rows):
        g, J = self.decode_with_jacobian(z)
        return g[rows], J[rows]

    def encode(self, y):
        return self.base.encode(y)

    def reference_state(self, x0):
        return self.base.reference_state(x0)


def load_models(model_dir: Path | None):
    """(numba TrainedManifold, float64 Keras decoder with the same weights, description)."""
    import keras

    from autoencoder.manifold import load_trained_manifold
    from autoencoder.model import build_decoder, load_keras_model

    if model_dir is not None:
        man = load_trained_manifold(model_dir)
        arch = man.manifest.get("settings", {}).get("autoencoder", PAPER)
        trained = load_keras_model(model_dir / "autoencoder.keras")
        weights = trained.get_layer("decoder").get_weights()
        dec = build_decoder(tuple(man.image_shape), man.p, arch, dtype="float64")
        dec.set_weights([w.astype(np.float64) for w in weights])
        return man, dec, f"trained model {model_dir}"
    # untrained paper decoder (Glorot weights) exported to the numba kernels
    from autoencoder.data import Restriction, Scaling
    from autoencoder.export import export_network
    from autoencoder.manifold import TrainedManifold

    p, shape = 3, (16, 16, 1)
    keras.utils.set_random_seed(0)
    dec = build_decoder(shape, p, PAPER, dtype="float64")
    enc_meta, enc_data = _identity_encoder(p)
    meta, data = export_network(dec)
    man = TrainedManifold(Path("<untrained>"), p, 256, "deviation",
                          Restriction(shape, np.arange(256)), Scaling(0.0, 0.5),
                          np.ascontiguousarray(meta, dtype=np.int64),
                          np.ascontiguousarray(data), enc_meta, enc_data, {})
    return man, dec, "untrained paper decoder (Glorot weights), p = 3"


def _identity_encoder(p: int):
    """A Dense 256 -> p encoder with zero weights (h(y) = 0), exported like a real one."""
    import keras

    from autoencoder.export import export_network

    inp = keras.Input((16, 16, 1), dtype="float64")
    out = keras.layers.Dense(p, kernel_initializer="zeros", dtype="float64")(
        keras.layers.Flatten(dtype="float64")(inp))
    meta, data = export_network(keras.Model(inp, out))
    return np.ascontiguousarray(meta, dtype=np.int64), np.ascontiguousarray(data)


def run(manifold, problem, mu, t_final, options):
    """One Deep LSPG run; a non-converging run is timed up to its failure."""
    from fom.errors import ConvergenceError
    from rom import solve_rom

    t0 = time.perf_counter()
    try:
        res, failed = solve_rom(problem, manifold, mu, "lspg", t_final=t_final,
                                options=options), ""
    except ConvergenceError as exc:
        res, failed = exc.partial, str(exc)
    return res, time.perf_counter() - t0, failed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="trained model folder (default: output/burgers1d/models/p3)")
    parser.add_argument("--mu", default="4.3,0.021", help="test parameter")
    parser.add_argument("--t-final", type=float, default=35.0, help="final time (35 = paper)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of the numba decoder Jacobian (TrainedManifold.threads)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")

    import fom
    from rom import DecoderManifold, ROMOptions

    model_dir = args.model_dir
    if model_dir is not None and not (model_dir / "manifest.json").is_file():
        parser.error(f"--model-dir {model_dir}: not a complete trained-model folder")
    if model_dir is None and (DEFAULT_MODEL / "manifest.json").is_file():
        model_dir = DEFAULT_MODEL
    man, keras_dec, what = load_models(model_dir)
    man.threads = args.threads
    problem = fom.Burgers1D(n_cells=man.n_dofs) if man.n_dofs != 256 else fom.Burgers1D()
    mu = np.array([float(v) for v in args.mu.split(",")])
    print(f"machine: {machine()}")
    print(f"model: {what}; problem: {problem.name}, N = {problem.n_dofs}, mu = {mu.tolist()}, "
          f"t_final = {args.t_final}, dt = {problem.dt}; numba decoder on {man.threads} "
          f"thread(s)")
    options = ROMOptions()
    numba_m = DecoderManifold(man)
    tf_m = DecoderManifold(TFDecoder(man, keras_dec))
    # warm-up: compile the numba kernels and trace the tf.function outside the timings
    z = np.zeros(man.p)
    numba_m.decode_with_jacobian(z)
    tf_m.decode_with_jacobian(z)
    run(numba_m, problem, mu, 2 * problem.dt, options)
    run(tf_m, problem, mu, 2 * problem.dt, options)

    r_nb, t_nb, f_nb = run(numba_m, problem, mu, args.t_final, options)
    r_tf, t_tf, f_tf = run(tf_m, problem, mu, args.t_final, options)
    k = min(len(r_nb.t), len(r_tf.t))
    diff = float(np.max(np.abs(r_nb.states[:k] - r_tf.states[:k])))
    out = {
        "numba_s": t_nb, "tf_s": t_tf, "speedup": t_tf / t_nb,
        "steps": [len(r_nb.t) - 1, len(r_tf.t) - 1],
        "gauss_newton_iterations": [int(r_nb.iterations.sum()), int(r_tf.iterations.sum())],
        "decoder_calls": [r_nb.decoder_calls, r_tf.decoder_calls],
        "max_state_difference": diff, "model": what, "machine": machine(),
        "failed": [f_nb, f_tf],
    }
    print(f"{'decoder':>10} {'wall (s)':>10} {'steps':>6} {'GN iters':>9} {'calls':>7} "
          f"{'per call':>10}")
    for name, r, t in (("numba", r_nb, t_nb), ("tensorflow", r_tf, t_tf)):
        print(f"{name:>10} {t:>10.3f} {len(r.t) - 1:>6} {int(r.iterations.sum()):>9} "
              f"{r.decoder_calls:>7} {1e3 * t / max(r.decoder_calls, 1):>8.3f}ms")
    print(f"speedup (TensorFlow / numba wall time): {out['speedup']:.1f}x; largest state "
          f"difference between the runs: {diff:.2e}")
    for name, f in (("numba", f_nb), ("tensorflow", f_tf)):
        if f:
            print(f"note: the {name} run stopped early: {f}")
    if args.json:
        from fom.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
