"""Decoder speed: numba forward-mode ``g(z)`` + ``dg/dz`` against TensorFlow's autodiff.

For the paper's Burgers decoder (Lee & Carlberg 2019, section 6.1; dense p -> 256, ELU, four
5 x 5 Conv2DTranspose layers 32/16/8/1, strides 2/2/2/1) with the same float64 weights, times

* numba: :meth:`autoencoder.manifold.TrainedManifold.decode_with_jacobian` (value and
  Jacobian in one call, unscaling and prolongation included: what the online ROM calls);
* TensorFlow: a ``tf.function`` returning the decoder output and ``GradientTape.jacobian``,
  as PERFORM and the paper's code evaluate the Jacobian at each Gauss-Newton iteration
  (float64, so the results can be compared; ``tf32_s`` also gives float32's time);

and prints both, the ratio and the largest relative difference of ``g`` and ``J``. It also
times one training epoch on the paper's 80-parameter Burgers training set
(``output/burgers1d/train.h5``, generated if missing) with the batch size of
``examples/burgers1d.toml``.

    python benchmarks/decoder_jacobian.py [--full] [--json PATH] [--model-dir DIR]

Default: p = 3 and 10, a few seconds of repetitions each, one epoch. ``--full``: p = 1..10,
longer timings, and the epoch also with the paper's batches of 20. ``--model-dir`` takes the
weights of a trained model (its p) instead of the Glorot initialization.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER = dict(filters=[8, 16, 32, 64], kernel_size=[5, 5, 5, 5], strides=[1, 2, 2, 2],
             padding="same", activation="elu", latent_activation="elu",
             output_activation="linear", variational=False, target="deviation",
             kl_weight=0.0, dims=2)
SHAPE = (16, 16, 1)


def machine() -> str:
    return (f"{platform.node()} {platform.machine()} {platform.processor() or ''} "
            f"{os.cpu_count()} cpus, Python {platform.python_version()}, numpy {np.__version__}")


def timeit(fn, min_time: float, blocks: int = 5) -> float:
    """Seconds per call of ``fn()``: the fastest of ``blocks`` blocks of repeated calls, each
    lasting about ``min_time / blocks`` (the minimum filters out the other processes sharing
    the machine, for both paths alike), after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    fn()
    per_block = max(1, int(min_time / blocks / max(time.perf_counter() - t0, 1e-7)))
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(per_block):
            fn()
        best = min(best, (time.perf_counter() - t0) / per_block)
    return best


def compare(p: int, min_time: float, model_dir: Path | None) -> dict[str, float]:
    import keras
    import tensorflow as tf

    from autoencoder.export import export_network
    from autoencoder.manifold import TrainedManifold
    from autoencoder.model import build_decoder, build_encoder

    keras.utils.set_random_seed(p)
    dec64 = build_decoder(SHAPE, p, PAPER, dtype="float64")
    dec32 = build_decoder(SHAPE, p, PAPER, dtype="float32")
    if model_dir is not None:
        trained = keras.saving.load_model(model_dir / "autoencoder.keras", safe_mode=True)
        weights = trained.get_layer("decoder").get_weights()
        dec64.set_weights([w.astype(np.float64) for w in weights])
    else:
        weights = dec64.get_weights()
    dec32.set_weights([w.astype(np.float32) for w in weights])
    meta, data = export_network(dec64)
    enc_meta, enc_data = export_network(build_encoder(SHAPE, p, PAPER, dtype="float64"))
    n = int(np.prod(SHAPE))
    perm = np.arange(n)
    # the online path: unit scaling so that g equals the Keras decoder's output
    manifold = TrainedManifold(Path("benchmark"), p, n, "deviation", SHAPE, 0.0, 1.0, perm,
                               meta, data, enc_meta, enc_data, {})
    z = np.random.default_rng(0).normal(size=p)

    def tf_path(model, dtype):
        @tf.function
        def g_and_jac(zt):
            with tf.GradientTape() as tape:
                tape.watch(zt)
                y = tf.reshape(model(zt), [-1])
            return y, tape.jacobian(y, zt)
        zt = tf.constant(z[None], dtype=dtype)
        return lambda: g_and_jac(zt)

    run64 = tf_path(dec64, tf.float64)
    run32 = tf_path(dec32, tf.float32)
    y, J = run64()
    y, J = y.numpy(), J.numpy().reshape(n, p)
    g, Jn = manifold.decode_with_jacobian(z)
    diff = max(np.max(np.abs(g - y)) / np.max(np.abs(y)),
               np.max(np.abs(Jn - J)) / np.max(np.abs(J)))
    t_numba = timeit(lambda: manifold.decode_with_jacobian(z), min_time)
    t_tf = timeit(run64, min_time)
    t_tf32 = timeit(run32, min_time)
    return {"p": p, "numba_s": t_numba, "tf_s": t_tf, "speedup": t_tf / t_numba,
            "max_rel_diff": float(diff), "tf32_s": t_tf32}


def epoch_time(batch_size: int) -> float:
    """Wall time of one training epoch (after a warm-up epoch) on the 80-parameter set."""
    from autoencoder.data import Restriction, prepare
    from autoencoder.settings import TRAINING_SCHEMA
    from autoencoder.train import _Trainer
    from fom.config import parse_section
    from fom.snapshots import generate_snapshots, paper_train_grid, read_snapshots

    path = ROOT / "output" / "burgers1d" / "train.h5"
    if not path.exists():
        import fom

        path.parent.mkdir(parents=True, exist_ok=True)
        generate_snapshots(fom.Burgers1D(), paper_train_grid(), path, progress=False)
    snap = read_snapshots(path)
    images, _ = prepare(snap.states, Restriction.from_image_shape(SHAPE, 2), "deviation")
    tr = parse_section({"batch_size": batch_size, "epochs": 2, "learning_rate": 1e-3},
                       TRAINING_SCHEMA, "benchmark")
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:  # the trainer's checkpoint goes there
        trainer = _Trainer(images, SHAPE, 3, PAPER, tr, Path(tmp), {}, False)
        trainer.fit(lambda e, h: times.append(h["time_s"]))
    return times[-1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="p = 1..10, longer timings")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--model-dir", type=Path, help="use a trained model's decoder")
    parser.add_argument("--no-epoch", action="store_true", help="skip the epoch timing")
    args = parser.parse_args(argv)
    import tomllib

    print(f"machine: {machine()}")
    ps = list(range(1, 11)) if args.full else [3, 10]
    if args.model_dir is not None:
        ps = [int(json.loads((args.model_dir / "manifest.json").read_text())["p"])]
    min_time = 3.0 if args.full else 1.0
    rows = []
    print(f"{'p':>3} {'numba g+J':>12} {'TF g+J f64':>12} {'TF f32':>12} {'speedup':>8} "
          f"{'max rel diff':>13}")
    for p in ps:
        r = compare(p, min_time, args.model_dir)
        rows.append(r)
        print(f"{p:>3} {r['numba_s'] * 1e6:>10.1f}us {r['tf_s'] * 1e6:>10.1f}us "
              f"{r['tf32_s'] * 1e6:>10.1f}us {r['speedup']:>7.1f}x {r['max_rel_diff']:>13.2e}",
              flush=True)
    out: dict = {"rows": rows, "machine": machine()}
    if not args.no_epoch:
        cfg = tomllib.loads((ROOT / "examples" / "burgers1d.toml").read_text())
        bs = int(cfg.get("training", {}).get("batch_size", 20))
        out["epoch_s"] = epoch_time(bs)
        out["epoch_batch_size"] = bs
        print(f"one training epoch, 80-parameter set (40 080 snapshots), batch {bs}: "
              f"{out['epoch_s']:.1f} s")
        if args.full and bs != 20:
            out["epoch_s_batch20"] = epoch_time(20)
            print(f"one training epoch, batch 20 (the paper's): {out['epoch_s_batch20']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
