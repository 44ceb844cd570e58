"""What a training step of the paper's Burgers autoencoder costs, and what each speed-up buys.

Measured side by side in one process (interleaved repetitions, so that every variant sees the
same load of a shared machine), with the training code itself (``autoencoder.train._Trainer``):

- the step cost against the batch size (CPU time and wall time per step and per sample): the
  step has a fixed cost (about a hundred small TensorFlow ops) on top of the per-sample cost,
  so the number of optimizer steps a time budget buys depends on the batch;
- its parts at two batch sizes: the forward pass, the gradient, the Adam update;
- XLA (``jit_compile=True``) on the same step, and the trainer's own step with and without
  the ``jit_compile`` key on the 2D Burgers autoencoder of ``examples/burgers2d.toml`` (the
  locally connected decoder, whose gather-based backward pass XLA fuses);
- a whole epoch as one ``tf.function`` (the batches gathered in the graph) against the Python
  loop over batches;
- a step with the residual term (``residual_weight > 0``: every sample brings its history
  image) against a plain one;

and in subprocesses (the settings must precede TensorFlow's start), for a plain step and a
step of the tangent residual stage (``residual_projection = "tangent"``): TensorFlow's oneDNN
kernels off, TensorFlow's own choice of them (``TF_ENABLE_ONEDNN_OPTS`` empty: on only with
AVX-512 neural-network instructions; importing ``autoencoder`` otherwise turns them on), and
one intra-op thread instead of the default.

    python benchmarks/training_speed.py [--json PATH] [--repeats N]

Prints the ratios and the absolute times with the CPU model; exits 0 (no acceptance checks:
these are measurements of means, recorded in the README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
P = 3
BATCHES = (32, 64, 128, 256)


def setup(n_traj: int = 4) -> tuple[Any, Any, Any, Any]:
    """A few full-size Burgers trajectories, their images, the residual operators, the
    architecture."""
    import fom
    from autoencoder.data import Restriction, prepare
    from autoencoder.residual import trajectory_residual
    from autoencoder.settings import AUTOENCODER_SCHEMA, check_architecture
    from fom.config import parse_section
    from fom.snapshots import generate_snapshots, paper_train_grid, read_snapshots

    if os.environ.get("TRAINING_SPEED_THREADS"):  # set before TensorFlow runs anything
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(
            int(os.environ["TRAINING_SPEED_THREADS"]))
    tmp = Path(tempfile.mkdtemp(prefix="mrom-speed-"))
    mus = paper_train_grid()[:: 80 // n_traj][:n_traj]
    snap = read_snapshots(generate_snapshots(fom.Burgers1D(), mus, tmp / "train.h5",
                                             progress=False))
    arch = check_architecture(parse_section({}, AUTOENCODER_SCHEMA, "x"), "x")
    r = Restriction.from_image_shape(snap.problem().image_shape, arch["dims"])
    images, _ = prepare(snap.states, r, "deviation")
    return images, r, trajectory_residual(snap, r), arch


def trainer(images: np.ndarray, r: Any, arch: dict, residual: Any = None,
            **training: Any) -> Any:
    from autoencoder.settings import TRAINING_SCHEMA
    from autoencoder.train import _Trainer
    from fom.config import parse_section

    tr = parse_section({"residual_weight": 10.0 if residual is not None else 0.0, **training},
                       TRAINING_SCHEMA, "x")
    return _Trainer(images, r.image_shape, P, arch, tr, Path(tempfile.mkdtemp()), {}, False,
                    None, residual)


def timed(fn: Any, n: int) -> tuple[float, float]:
    """Wall and CPU seconds per call of ``fn`` over ``n`` calls (after one warm-up)."""
    fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def interleaved(cases: dict[str, Any], n: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds per call of each case, the cases taking turns."""
    rec: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for fn in cases.values():  # warm-up and tracing outside the timings
        fn()
    for _ in range(repeats):
        for k, fn in cases.items():
            rec[k].append(timed(fn, n))
    return {k: {"wall_s": float(np.median([w for w, _ in v])),
                "cpu_s": float(np.median([c for _, c in v]))} for k, v in rec.items()}


def step_cases(images: np.ndarray, r: Any, arch: dict, residual: Any) -> dict[str, Any]:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    seed = tf.constant([0, 0], dtype=tf.int32)
    cases: dict[str, Any] = {}
    tr = trainer(images, r, arch)
    for bs in BATCHES:
        idx = rng.choice(images.shape[0], bs, replace=False)
        batch, w = tr._batch(idx), np.ones(bs, dtype=np.float32)
        cases[f"step b{bs}"] = lambda b=batch, w=w: float(tr.train_step(seed, w, *b)[0])

    # parts of a step, and XLA, on the same network
    ae, vars_, opt = tr.ae, tr.vars, tr.opt

    def loss(x: Any) -> Any:
        return tf.reduce_mean(tf.square(ae(x, training=True) - x))

    @tf.function
    def forward(x: Any) -> Any:
        return loss(x)

    @tf.function
    def gradient(x: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss(x)
        return tape.gradient(value, vars_)

    def make_step(jit: bool) -> Any:
        @tf.function(jit_compile=jit)
        def step(x: Any) -> Any:
            with tf.GradientTape() as tape:
                value = loss(x)
            opt.apply_gradients(zip(tape.gradient(value, vars_), vars_, strict=True))
            return value
        return step

    plain, xla = make_step(False), make_step(True)
    for bs in (32, 128):
        x = images[rng.choice(images.shape[0], bs, replace=False)]
        cases[f"forward b{bs}"] = lambda x=x: float(forward(x))
        cases[f"gradient b{bs}"] = lambda x=x: [g.numpy() for g in gradient(x)][0]
    x = images[rng.choice(images.shape[0], 128, replace=False)]
    cases["no-XLA b128"] = lambda: float(plain(x))
    cases["XLA b128"] = lambda: float(xla(x))

    # the residual term: a step of 128 samples, each with its history image
    rt = trainer(images, r, arch, residual)
    idx = rng.choice(residual.n_samples, 128, replace=False)
    batch, w = rt._batch(idx), np.ones(128, dtype=np.float32)
    cases["residual b128"] = lambda: float(rt.train_step(seed, w, *batch)[0])
    return cases


def epoch_cases(images: np.ndarray, r: Any, arch: dict) -> dict[str, Any]:
    """One epoch over the images at batch 64: Python loop against one tf.function."""
    import tensorflow as tf

    tr = trainer(images, r, arch)
    bs, n = 64, images.shape[0] // 64 * 64
    data, seed = tf.constant(images), tf.constant([0, 0], dtype=tf.int32)
    w = tf.ones(bs)

    def python_loop() -> float:
        order = np.random.default_rng(0).permutation(images.shape[0])[:n]
        return sum(float(tr.train_step(seed, w, images[order[i:i + bs]])[0])
                   for i in range(0, n, bs))

    @tf.function
    def graph_epoch(order: Any) -> Any:
        total = tf.constant(0.0)
        for b in tf.range(n // bs):
            total += tr.train_step(seed, w, tf.gather(data, order[b * bs:(b + 1) * bs]))[0]
        return total

    order = tf.constant(np.random.default_rng(0).permutation(images.shape[0])[:n])
    return {"epoch python loop b64": python_loop,
            "epoch tf.function b64": lambda: float(graph_epoch(order))}


def local2d_cases() -> dict[str, Any]:
    """The trainer's step (batch 32) of the 2D Burgers autoencoder of
    ``examples/burgers2d.toml``, with ``jit_compile`` off and on, on every 8th state of one
    2D Burgers trajectory (mu = 1.05)."""
    import tomllib

    import tensorflow as tf

    import fom
    from autoencoder.data import Restriction, Scaling, prepare, targets
    from autoencoder.settings import AUTOENCODER_SCHEMA, check_architecture
    from fom.config import parse_section
    from fom.snapshots import generate_snapshots, read_snapshots

    cfg = tomllib.loads((ROOT / "examples" / "burgers2d.toml").read_text())
    arch = check_architecture(parse_section(cfg["autoencoder"], AUTOENCODER_SCHEMA, "x"), "x")
    problem = fom.Burgers2D()
    tmp = Path(tempfile.mkdtemp(prefix="mrom-speed-"))
    states = read_snapshots(generate_snapshots(problem, [[1.05]], tmp / "b2d.h5",
                                               progress=False)).states[:, ::8]
    r = Restriction.for_problem(problem, 2)
    images, _ = prepare(states, r, arch["target"],
                        Scaling.fit(targets(states, arch["target"]), r, arch["scaling"]))
    seed, w = tf.constant([0, 0], dtype=tf.int32), np.ones(32, dtype=np.float32)
    cases: dict[str, Any] = {}
    for jit in (False, True):
        tr = trainer(images, r, arch, batch_size=32, jit_compile=jit)
        batch = tr._batch(np.random.default_rng(0).choice(images.shape[0], 32, replace=False))
        cases[f"2D local b32 jit={jit}"] = (
            lambda tr=tr, b=batch: float(tr.train_step(seed, w, *b)[0]))
    # an epoch with hard-example weights (as the example trains: XLA, q = 1): the weights
    # from a pass over the training images before the epoch, or from the previous epoch's
    # training pass (hard_example_errors)
    order = np.arange(images.shape[0])
    for source in ("recomputed", "training_pass"):
        tr = trainer(images, r, arch, batch_size=32, jit_compile=True,
                     hard_example_exponent=1.0, hard_example_errors=source)

        def epoch(tr: Any = tr) -> float:
            total, errs = tr.train_epoch(order, tr._sample_weights(0), tf.constant(0))
            tr.pass_errors = errs.numpy()          # as fit records them (order = identity)
            return float(total)

        cases[f"2D local epoch errors={source}"] = epoch
    return cases


def subprocess_case(env: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    """The batch-128 step, plain (``"plain"``) and of the tangent residual stage
    (``"tangent"``), in a fresh interpreter with ``env`` (oneDNN, threads)."""
    here = str(Path(__file__).parent)
    code = (f"import json, sys; sys.path.insert(0, {here!r}); import training_speed as t; "
            "im, r, res, a = t.setup(2); tr = t.trainer(im, r, a); import numpy as np; "
            "tt = t.trainer(im, r, a, res, residual_projection='tangent'); "
            "import tensorflow as tf; s = tf.constant([0, 0], dtype=tf.int32); "
            "b = tr._batch(np.arange(128)); w = np.ones(128, dtype=np.float32); "
            "bt = tt._batch(np.arange(128)); "
            "out = t.interleaved({'plain': lambda: float(tr.train_step(s, w, *b)[0]), "
            "'tangent': lambda: float(tt.train_step(s, w, *bt)[0])}, 10, "
            f"{repeats}); print('RESULT', json.dumps(out))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, cwd=ROOT, check=True)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line.split(" ", 1)[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    args = parser.parse_args(argv)
    from select_recipe import machine

    images, r, residual, arch = setup()
    out: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()[0]}
    steps = interleaved(step_cases(images, r, arch, residual), 20, args.repeats)
    epochs = interleaved(epoch_cases(images, r, arch), 1, max(2, args.repeats // 2))
    steps.update(interleaved(local2d_cases(), 10, args.repeats))
    sub = {"default": subprocess_case({}, args.repeats),
           "oneDNN off": subprocess_case({"TF_ENABLE_ONEDNN_OPTS": "0"}, args.repeats),
           "TensorFlow's oneDNN default": subprocess_case({"TF_ENABLE_ONEDNN_OPTS": ""},
                                                          args.repeats),
           "1 intra-op thread": subprocess_case({"TRAINING_SPEED_THREADS": "1"},
                                                args.repeats)}
    out.update(steps=steps, epochs=epochs, subprocess=sub, load_after=os.getloadavg()[0])

    print(f"machine: {out['machine']}; load average {out['load_before']:.1f} -> "
          f"{out['load_after']:.1f} (wall times grow with the load, CPU times less so)\n")
    print("| training step | CPU ms/step | CPU us/sample | wall ms/step |\n|---|---:|---:|---:|")
    for bs in BATCHES:
        s = steps[f"step b{bs}"]
        print(f"| batch {bs} | {1e3 * s['cpu_s']:.1f} | {1e6 * s['cpu_s'] / bs:.0f} | "
              f"{1e3 * s['wall_s']:.1f} |")
    a, b = steps["step b32"]["cpu_s"], steps["step b128"]["cpu_s"]
    per = (b - a) / 96
    print(f"\nfit: {1e3 * (a - 32 * per):.1f} ms per step + {1e6 * per:.0f} us per sample (CPU)")
    print("\n| part (CPU ms) | batch 32 | batch 128 |\n|---|---:|---:|")
    for part in ("forward", "gradient", "step"):
        print(f"| {part} | {1e3 * steps[f'{part} b32']['cpu_s']:.1f} | "
              f"{1e3 * steps[f'{part} b128']['cpu_s']:.1f} |")
    ratio = lambda k1, k2, key="cpu_s": steps[k1][key] / steps[k2][key]  # noqa: E731
    print(f"\nXLA jit_compile, batch 128: {ratio('XLA b128', 'no-XLA b128'):.2f}x the CPU time "
          f"({ratio('XLA b128', 'no-XLA b128', 'wall_s'):.2f}x the wall time) of the plain "
          "step")
    on, off = "2D local b32 jit=True", "2D local b32 jit=False"
    print(f"XLA (jit_compile = true), 2D Burgers locally connected autoencoder, batch 32: "
          f"{ratio(on, off):.2f}x the CPU time ({ratio(on, off, 'wall_s'):.2f}x the wall time; "
          f"{1e3 * steps[off]['wall_s']:.1f} -> {1e3 * steps[on]['wall_s']:.1f} ms per step)")
    on, off = "2D local epoch errors=training_pass", "2D local epoch errors=recomputed"
    print(f"hard-example errors from the training pass (hard_example_errors), 2D Burgers "
          f"epoch: {ratio(on, off):.2f}x the CPU time ({ratio(on, off, 'wall_s'):.2f}x the "
          f"wall time; {1e3 * steps[off]['wall_s']:.0f} -> {1e3 * steps[on]['wall_s']:.0f} ms "
          "per epoch of every 8th state of one trajectory)")
    print(f"residual term, batch 128: {ratio('residual b128', 'step b128'):.2f}x the CPU time "
          "of a plain step")
    e = epochs
    print(f"one tf.function per epoch, batch 64: "
          f"{e['epoch tf.function b64']['cpu_s'] / e['epoch python loop b64']['cpu_s']:.2f}x "
          "the CPU time of the Python loop")
    d = sub["default"]
    print(f"\nbatch-128 step in a fresh process, default (oneDNN on): plain "
          f"{1e3 * d['plain']['cpu_s']:.1f} ms CPU, tangent residual stage "
          f"{1e3 * d['tangent']['cpu_s']:.1f} ms CPU")
    for k in ("oneDNN off", "TensorFlow's oneDNN default", "1 intra-op thread"):
        for step in ("plain", "tangent"):
            a, b = sub[k][step], d[step]
            print(f"{k}, {step} step: {a['cpu_s'] / b['cpu_s']:.2f}x the CPU time, "
                  f"{a['wall_s'] / b['wall_s']:.2f}x the wall time of the default")
    if args.json:
        from fom.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
