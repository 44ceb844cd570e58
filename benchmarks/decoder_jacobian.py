"""Decoder speed: numba forward-mode ``g(z)`` + ``dg/dz`` against TensorFlow's autodiff.

For the paper's Burgers decoder (Lee & Carlberg 2019, section 6.1; dense p -> 256, ELU, four
5 x 5 Conv2DTranspose layers 32/16/8/1, strides 2/2/2/1) with the same float64 weights, times

* numba: :meth:`autoencoder.manifold.TrainedManifold.decode_with_jacobian` (value and
  Jacobian in one call, unscaling and prolongation included: what the online ROM calls), on
  one thread (the default) and on two (``TrainedManifold.threads = 2``: the tangent
  directions shared out, each thread also computing the value);
* TensorFlow: a ``tf.function`` returning the decoder output and ``GradientTape.jacobian``,
  as PERFORM and the paper's code evaluate the Jacobian at each Gauss-Newton iteration
  (float64, so the results can be compared; TensorFlow's default thread pools, i.e. every
  core; ``TF f32`` gives float32's time for reference).

The machine may be shared: the variants are timed in interleaved rounds (each round one block
of calls of each), and the script prints per-call medians with the min-max spread over the
rounds, and the median of the per-round ratios TF / numba with its spread. It prints the CPU
model, the core count and the load average before and after.

The same for the 2D Burgers decoder of ``examples/burgers2d.toml`` (``[autoencoder]``: its
architecture, image size and latent dimensions; untrained weights): two channels u, v, the
58 x 58 grid padded to the image, ``g`` and ``J`` in state units through the restriction's
``pix``. For it the script also prints the decoder's multiply-adds per batch row, full and
through the dependency cone of the stencil of 60 random grid nodes (the rows a hyper-reduced
ROM evaluates, :mod:`autoencoder.restricted`), and the time of that restricted evaluation
(``TrainedManifold.decode_rows``).

Acceptance: at every p, TF / numba >= 30 (median over the rounds) for numba on one thread or
on two (whichever is faster at that p, both printed) for the paper's decoder, and >= 10 for the
2D Burgers decoder (a larger image with few channels: TensorFlow's per-operation overhead
weighs less); the script exits 1 otherwise, and also if numba and TF differ by more than 1e-12
(relative).

It also times one training epoch on the paper's 80-parameter Burgers training set
(``output/burgers1d/train.h5``, generated if missing) with the batch size of
``examples/burgers1d.toml``.

    python benchmarks/decoder_jacobian.py [--full] [--json PATH] [--model-dir DIR] [--no-epoch]
                                          [--no-2d]

Default: p = 3 and 10, 9 rounds of about 0.1 s per variant, one epoch. ``--full``: p = 1..10,
21 rounds, and the epoch also with the paper's batches of 20. ``--model-dir`` takes the
weights of a trained model (its p, its image and architecture) instead of the Glorot
initialization of the paper's decoder. ``--no-2d`` skips the 2D Burgers decoder.
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

import autoencoder  # noqa: E402, F401  (before TensorFlow starts: autoencoder/__init__.py)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fom_speed import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER = dict(filters=[8, 16, 32, 64], kernel_size=[5, 5, 5, 5], strides=[1, 2, 2, 2],
             padding="same", activation="elu", latent_activation="elu",
             output_activation="linear", variational=False, target="deviation",
             kl_weight=0.0, dims=2)
SHAPE = (16, 16, 1)
#: Required TF / numba ratio at every p (the paper's decoder; the 2D Burgers decoder).
TARGET = 30.0
TARGET_2D = 10.0
#: Grid nodes whose stencil the hyper-reduced evaluation of the 2D decoder takes.
SAMPLE_NODES = 60
#: Largest relative difference allowed between numba's and TF's g and J (float64 round-off).
RTOL = 1e-12


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def machine() -> str:
    return (f"{cpu_model()}, {n_cores()} cores available ({os.cpu_count()} cpus), "
            f"{platform.node()}, Python {platform.python_version()}, numpy {np.__version__}")


def interleaved(fns: dict, rounds: int, block_s: float) -> dict[str, np.ndarray]:
    """Seconds per call of each ``fns[k]()`` in each of ``rounds`` rounds; a round runs one
    block of about ``block_s`` seconds of each function, in turn (in an order rotated from
    round to round, so that no variant always follows the same one), so that every variant
    sees the same load. The block sizes are set from a warm-up call."""
    n = {}
    for k, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        n[k] = max(1, int(block_s / max(time.perf_counter() - t0, 1e-7)))
    out = {k: np.empty(rounds) for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = fns[k]
            t0 = time.perf_counter()
            for _ in range(n[k]):
                fn()
            out[k][r] = (time.perf_counter() - t0) / n[k]
    return out


def burgers2d_decoder() -> tuple[dict, object]:
    """The ``[autoencoder]`` section of ``examples/burgers2d.toml`` (validated) and its
    restriction for the config's problem."""
    from autoencoder.train import settings_from_config
    from fom.config import load_config

    cfg = load_config(ROOT / "examples" / "burgers2d.toml")
    arch, _ = settings_from_config(cfg)
    from autoencoder.train import restriction_from_config

    return arch, restriction_from_config(cfg, arch)


def compare(p: int, rounds: int, block_s: float, model_dir: Path | None,
            case: str = "paper") -> dict:
    """Time numba (one and two threads) and TensorFlow (float64, float32) for the decoder of
    ``case``: ``"paper"`` (the paper's 16 x 16 decoder, or ``model_dir``'s) or
    ``"burgers2d"`` (``examples/burgers2d.toml``'s)."""
    import keras
    import tensorflow as tf

    from autoencoder.data import Restriction, Scaling
    from autoencoder.export import export_network
    from autoencoder.manifold import TrainedManifold, load_trained_manifold
    from autoencoder.model import build_decoder, build_encoder, load_keras_model

    arch, shape, restriction = PAPER, SHAPE, Restriction(SHAPE, np.arange(256))
    if case == "burgers2d":
        arch, restriction = burgers2d_decoder()
        shape = restriction.image_shape
    elif model_dir is not None:
        trained_m = load_trained_manifold(model_dir)
        arch = trained_m.manifest.get("settings", {}).get("autoencoder", PAPER)
        restriction, shape = trained_m.restriction, trained_m.restriction.image_shape
    keras.utils.set_random_seed(p)
    dec64 = build_decoder(shape, p, arch, dtype="float64")
    dec32 = build_decoder(shape, p, arch, dtype="float32")
    if model_dir is not None and case == "paper":
        trained = load_keras_model(model_dir / "autoencoder.keras")
        weights = trained.get_layer("decoder").get_weights()
        dec64.set_weights([w.astype(np.float64) for w in weights])
    else:
        weights = dec64.get_weights()
    dec32.set_weights([w.astype(np.float32) for w in weights])
    meta, data = export_network(dec64)
    enc_meta, enc_data = export_network(build_encoder(shape, p, arch, dtype="float64"))
    n = restriction.n_dofs
    pix = restriction.pix
    # the online path: unit scaling so that g equals the Keras decoder's output at pix
    ones = Scaling(np.zeros(shape[-1]), np.ones(shape[-1]))
    args = (Path("benchmark"), p, n, "deviation", restriction, ones, meta, data, enc_meta,
            enc_data, {})
    one, two = TrainedManifold(*args), TrainedManifold(*args, threads=2)
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
    y, J = y.numpy()[pix], J.numpy().reshape(-1, p)[pix]
    diff = 0.0
    for man in (one, two):
        g, Jn = man.decode_with_jacobian(z)
        diff = max(diff, np.max(np.abs(g - y)) / np.max(np.abs(y)),
                   np.max(np.abs(Jn - J)) / np.max(np.abs(J)))
    fns = {"tf": run64, "numba1": lambda: one.decode_with_jacobian(z),
           "numba2": lambda: two.decode_with_jacobian(z), "tf32": run32}
    row: dict = {"case": case, "p": p, "max_rel_diff": float(diff),
                 "image_shape": list(shape), "n_dofs": n}
    if case == "burgers2d":
        import fom

        problem = fom.Burgers2D(n=int(round(np.sqrt(n // 2))) + 2)
        m2 = problem.m * problem.m
        nodes = np.random.default_rng(1).choice(m2, SAMPLE_NODES, replace=False)
        rows = problem.stencil(np.concatenate([nodes, nodes + m2]))
        cost = one.cone_cost(rows)
        gr, Jr = one.decode_rows(z, rows)
        diff_rows = max(np.max(np.abs(gr - g[rows])) / np.max(np.abs(g)),
                        np.max(np.abs(Jr - Jn[rows])) / np.max(np.abs(Jn)))
        row.update({"macs_full": cost["full_macs"], "macs_cone": cost["macs"],
                    "cone_rows": int(rows.size), "cone_max_rel_diff": float(diff_rows)})
        fns["rows"] = lambda: one.decode_rows(z, rows)
    t = interleaved(fns, rounds, block_s)
    for k, v in t.items():
        row[f"{k}_s"] = float(np.median(v))
        row[f"{k}_s_min_max"] = [float(v.min()), float(v.max())]
    for k in ("numba1", "numba2"):
        ratio = t["tf"] / t[k]
        row[f"speedup_{k}"] = float(np.median(ratio))
        row[f"speedup_{k}_min_max"] = [float(ratio.min()), float(ratio.max())]
    row["best"] = max(("numba1", "numba2"), key=lambda k: row[f"speedup_{k}"])
    row["speedup"] = row[f"speedup_{row['best']}"]
    return row


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


def _us(row: dict, key: str) -> str:
    lo, hi = row[f"{key}_s_min_max"]
    return f"{row[f'{key}_s'] * 1e6:8.0f} ({lo * 1e6:.0f}-{hi * 1e6:.0f})"


def _x(row: dict, key: str) -> str:
    lo, hi = row[f"speedup_{key}_min_max"]
    return f"{row[f'speedup_{key}']:5.1f}x ({lo:.0f}-{hi:.0f})"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="p = 1..10, more rounds")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--model-dir", type=Path, help="use a trained model's decoder")
    parser.add_argument("--no-epoch", action="store_true", help="skip the epoch timing")
    parser.add_argument("--no-2d", action="store_true", help="skip the 2D Burgers decoder")
    args = parser.parse_args(argv)
    import tomllib

    import numba
    import tensorflow as tf

    import autoencoder.kernels  # noqa: F401  (sets OpenMP's wait policy before numba starts it)

    print(f"machine: {machine()}")
    print(f"TensorFlow {tf.__version__}: intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default (all cores)'}; "
          f"numba {numba.__version__}, {numba.get_num_threads()} threads")
    print(f"before: {load()}")
    ps = list(range(1, 11)) if args.full else [3, 10]
    if args.model_dir is not None:
        ps = [int(json.loads((args.model_dir / "manifest.json").read_text())["p"])]
    rounds, block_s = (21, 0.1) if args.full else (9, 0.1)
    print(f"per call, median (min-max) over {rounds} interleaved rounds, in microseconds; "
          f"ratio = TF f64 / numba per round, median (min-max)")
    print(f"{'p':>3} {'numba 1 thread':>20} {'numba 2 threads':>20} {'TF f64':>22} "
          f"{'TF f32':>20} {'TF/numba 1':>17} {'TF/numba 2':>17} {'max rel diff':>12}")
    cases = [("paper", p) for p in ps]
    if not args.no_2d:
        arch2d, r2d = burgers2d_decoder()
        ps2d = list(range(2, 11)) if args.full else list(arch2d["latent_dims"])
        cases += [("burgers2d", p) for p in ps2d]
    rows = []
    for case, p in cases:
        if case == "burgers2d" and (not rows or rows[-1]["case"] != case):
            image = " x ".join(map(str, r2d.image_shape))
            print(f"2D Burgers decoder of examples/burgers2d.toml ({image} image, filters "
                  f"{arch2d['filters']}, kernels {arch2d['kernel_size']}, strides "
                  f"{arch2d['strides']}; untrained):")
        r = compare(p, rounds, block_s, args.model_dir, case)
        rows.append(r)
        print(f"{p:>3} {_us(r, 'numba1'):>20} {_us(r, 'numba2'):>20} {_us(r, 'tf'):>22} "
              f"{_us(r, 'tf32'):>20} {_x(r, 'numba1'):>17} {_x(r, 'numba2'):>17} "
              f"{r['max_rel_diff']:>12.1e}", flush=True)
        if case == "burgers2d":
            print(f"    multiply-adds per batch row: full {r['macs_full']:,}, cone of the "
                  f"stencil of {SAMPLE_NODES} nodes ({r['cone_rows']} state rows) "
                  f"{r['macs_cone']:,} ({r['macs_cone'] / r['macs_full']:.0%}); decode_rows "
                  f"there {_us(r, 'rows')} us, rows = full rows to "
                  f"{r['cone_max_rel_diff']:.1e}", flush=True)
    print(f"after: {load()}; numba threading layer {numba.threading_layer()}, OpenMP wait "
          f"policy {os.environ.get('OMP_WAIT_POLICY')}")
    failures = []
    for r in rows:
        which = "1 thread" if r["best"] == "numba1" else "2 threads"
        target = TARGET if r["case"] == "paper" else TARGET_2D
        ok = r["speedup"] >= target
        name = f"{r['case']} p = {r['p']}"
        print(f"{name}: numba ({which}) {r['speedup']:.1f}x faster than TF: "
              f"{'PASS' if ok else 'FAIL'} (>= {target:.0f}x)")
        if not ok:
            failures.append(f"{name}: {r['speedup']:.1f}x < {target:.0f}x")
        if r["max_rel_diff"] > RTOL:
            failures.append(f"{name}: numba and TF differ by {r['max_rel_diff']:.1e}")
        if r.get("cone_max_rel_diff", 0.0) > 1e-12:
            failures.append(f"{name}: the cone's rows differ from the full rows by "
                            f"{r['cone_max_rel_diff']:.1e}")
    out: dict = {"rows": rows, "machine": machine(), "target": TARGET,
                 "rounds": rounds, "passed": not failures}
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
        from fom.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps(out, indent=1))
    if failures:
        print("FAIL: " + "; ".join(failures), file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
