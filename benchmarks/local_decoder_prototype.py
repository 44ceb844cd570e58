"""A prototype decoder for 2D Burgers: a locally connected output layer (README, 2D results).

Not part of the package's architectures yet. It measures, at a held-out training parameter,
what a decoder whose every state entry has its own output weights gives, in the spirit of
NM-ROM's shallow masked decoder (Kim, Choi, Widemann & Zohdi 2022):

* encoder: the package's conv encoder (:func:`autoencoder.model.build_encoder`) with
  ``examples/burgers2d.toml``'s layers (four stride-2 4 x 4 convolutions, 8-16-16-32 filters,
  ELU, dense to p) on the (58, 58, 2) image of the interior;
* decoder hidden grid ``(29, 29, C)``: ``--hidden dense`` maps z straight onto it (dense, SiLU);
  ``--hidden conv`` maps z to 15 x 15 x 16 (dense, ELU), then one stride-2 4 x 4 transposed
  convolution with C filters (SiLU), cropped from 30 x 30 to 29 x 29;
* output: state entry (field c, node (i, j)) = its bias + its own ``w * w * C`` weights on the
  hidden cells ``(i // 2 + a, j // 2 + b)``, ``a, b`` in the ``w x w`` window around (zero
  outside the grid).

Training: the deviation ``x - x0`` scaled by its largest magnitude, every 2nd step of the
training trajectories except ``--hold-out``, batch 32, Adam with a cosine schedule from 4e-3,
the zero deviation repeated ``--anchor`` times (``initial_state_weight``'s role). Then Deep
LSPG (backward Euler, :func:`rom.online.run_rom`) at trajectories of the *training* file: the
hidden layers run in Keras in float64 (their Jacobian by forward-mode accumulation), the output
layer in NumPy. The test file is never read.

    python benchmarks/local_decoder_prototype.py train output/burgers2d/train.h5 \\
        --hold-out 2 --hidden conv --epochs 125 --out output/local_decoder/conv.npz
    python benchmarks/local_decoder_prototype.py rom examples/burgers2d.toml \\
        output/local_decoder/conv.npz --index 2

Measured (README): ``--hidden conv``, 125 epochs, μ = 1.05 held out: projection 1.27 %, Deep
LSPG 3.30 %; ``--hidden dense``: projection 1.55 %, Deep LSPG leaves the data after step 300.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoencoder.model import build_encoder  # noqa: E402
from fom.atomic import atomic_path  # noqa: E402
from fom.config import load_config  # noqa: E402
from fom.snapshots import read_snapshots  # noqa: E402
from rom.manifolds import DecoderManifold  # noqa: E402
from rom.online import rom_options, rom_settings, run_rom, time_grid  # noqa: E402

N, NC = 58, 29          # interior nodes per direction, hidden grid (stride 2)
#: The encoder: examples/burgers2d.toml's (autoencoder.model.build_encoder) on the 58 x 58 image.
ENCODER = {"filters": [8, 16, 16, 32], "kernel_size": [4] * 4, "strides": [2] * 4,
           "padding": "same", "activation": "elu", "latent_activation": "linear",
           "variational": False}


def images(dev: np.ndarray, scale: float) -> np.ndarray:
    """States' deviations (n, 2 * 58 * 58) -> scaled float32 images (n, 58, 58, 2)."""
    return (dev / scale).reshape(-1, 2, N, N).transpose(0, 2, 3, 1).astype(np.float32)


def build(p: int, hidden: str, C: int, dtype: str = "float32") -> tuple[Any, Any]:
    """``(encoder, hidden)``: Keras models image -> z and z -> hidden grid (flat)."""
    import keras

    L = keras.layers
    enc = build_encoder((N, N, 2), p, ENCODER, dtype)
    z = keras.Input((p,), dtype=dtype)
    if hidden == "conv":
        h = L.Dense(15 * 15 * 16, activation="elu", dtype=dtype)(z)
        h = L.Reshape((15, 15, 16), dtype=dtype)(h)
        h = L.Conv2DTranspose(C, 4, strides=2, padding="same", activation="silu",
                              dtype=dtype)(h)
        h = L.Flatten(dtype=dtype)(L.Cropping2D(((0, 1), (0, 1)), dtype=dtype)(h))
    else:
        h = L.Dense(NC * NC * C, activation="silu", dtype=dtype)(z)
    return enc, keras.Model(z, h)


def window_stack(h: Any, win: int, C: int, xp: Any) -> Any:
    """Hidden grid (B, 29 * 29 * C) -> (B, 58, 58, win * win * C): each node's window."""
    pad = (win // 2, win - 1 - win // 2)
    if xp is np:
        hp = np.pad(h.reshape(-1, NC, NC, C), ((0, 0), pad, pad, (0, 0)))
        cat, rep = np.concatenate, np.repeat
    else:
        hp = xp.pad(xp.reshape(h, (-1, NC, NC, C)), [[0, 0], list(pad), list(pad), [0, 0]])
        cat, rep = xp.concat, xp.repeat
    P = cat([hp[:, a:a + NC, b:b + NC, :] for a in range(win) for b in range(win)], axis=-1)
    return rep(rep(P, 2, axis=1), 2, axis=2)


def train(args: argparse.Namespace) -> int:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    snap = read_snapshots(args.snapshots)
    S = snap.states
    if S.shape[2] != 2 * N * N:
        raise SystemExit(f"{args.snapshots}: states of size {S.shape[2]}, expected a 60 x 60 "
                         f"burgers2d grid ({2 * N * N})")
    if not 0 <= args.hold_out < snap.n_mu:
        raise SystemExit(f"--hold-out must lie in [0, {snap.n_mu - 1}] for {args.snapshots}")
    keep = [i for i in range(snap.n_mu) if i != args.hold_out]
    dev = S[keep] - S[keep, :1]
    scale = float(np.abs(dev).max())
    X = images(dev[:, ::2].reshape(-1, S.shape[2]), scale)
    X = np.concatenate([X, np.zeros((args.anchor, N, N, 2), np.float32)])
    K = args.window ** 2 * args.channels
    enc, hid = build(args.p, args.hidden, args.channels)

    class LocalOut(keras.layers.Layer):
        def build(self, shape: Any) -> None:
            self.w = self.add_weight(shape=(N, N, 2, K), initializer=keras.initializers
                                     .RandomNormal(stddev=1.0 / np.sqrt(K)))
            self.bias = self.add_weight(shape=(N, N, 2), initializer="zeros")

        def call(self, h: Any) -> Any:
            P = window_stack(h, args.window, args.channels, tf)
            return tf.einsum("bijq,ijcq->bijc", P, self.w) + self.bias

    out = LocalOut()
    inp = keras.Input((N, N, 2))
    ae = keras.Model(inp, out(hid(enc(inp))))
    steps = args.epochs * int(np.ceil(len(X) / 32))
    ae.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        4e-3, steps, alpha=1e-5 / 4e-3)), loss="mse")
    t0 = time.time()
    for done in range(0, args.epochs, 25):
        hist = ae.fit(X, X, batch_size=32, epochs=min(25, args.epochs - done), verbose=0)
        print(f"epoch {min(done + 25, args.epochs)}: loss {hist.history['loss'][-1]:.3e}, "
              f"{time.time() - t0:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, scale=scale, p=args.p, channels=args.channels, window=args.window,
                 hidden=args.hidden, n_enc=len(enc.weights), n_hid=len(hid.weights),
                 **{f"w{k}": w.numpy() for k, w in enumerate(
                     [*enc.weights, *hid.weights, out.w, out.bias])})
    print(f"wrote {args.out}")
    return 0


class LocalDecoder:
    """The prototype as a ``TrainedManifold`` (rom.manifolds.DecoderManifold's interface)."""

    target = "deviation"

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        d = np.load(path)
        self.tf = tf
        self.scale = float(d["scale"])
        self.p, self.C, self.win = int(d["p"]), int(d["channels"]), int(d["window"])
        self.n_dofs = 2 * N * N
        ws = [d[f"w{k}"] for k in range(int(d["n_enc"]) + int(d["n_hid"]) + 2)]
        self.enc, _ = build(self.p, str(d["hidden"]), self.C)
        _, self.hid = build(self.p, str(d["hidden"]), self.C, "float64")
        n_enc = int(d["n_enc"])
        self.enc.set_weights(ws[:n_enc])
        self.hid.set_weights(ws[n_enc:-2])
        self.W, self.B = ws[-2].astype(np.float64), ws[-1].astype(np.float64)

    def decode(self, z: np.ndarray) -> np.ndarray:
        h = self.hid(self.tf.constant(z[None], dtype=self.tf.float64)).numpy()
        out = np.einsum("ijq,ijcq->ijc", window_stack(h, self.win, self.C, np)[0], self.W)
        out += self.B
        return self.scale * out.transpose(2, 0, 1).reshape(-1)

    def decode_with_jacobian(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tf, p = self.tf, self.p
        zt = tf.constant(np.repeat(z[None], p, 0), dtype=tf.float64)
        with tf.autodiff.ForwardAccumulator(zt, tf.eye(p, dtype=tf.float64)) as acc:
            h = self.hid(zt)
        dh = acc.jvp(h).numpy()                                  # (p, hidden)
        P = window_stack(np.concatenate([h[:1].numpy(), dh]), self.win, self.C, np)
        out = np.einsum("bijq,ijcq->bcij", P, self.W)
        g = self.scale * (out[0] + self.B.transpose(2, 0, 1)).reshape(-1)
        return g, self.scale * out[1:].reshape(p, -1).T

    def decode_rows(self, z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, J = self.decode_with_jacobian(z)
        return g[rows], J[rows]

    def encode_many(self, U: np.ndarray) -> np.ndarray:
        return self.enc.predict(images(U, self.scale), batch_size=256,
                                verbose=0).astype(np.float64)

    def encode(self, u: np.ndarray) -> np.ndarray:
        return self.encode_many(u[None])[0]

    def reference_state(self, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z0 = self.encode(np.zeros(self.n_dofs))
        return x0 - self.decode(z0), z0


def rom(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    snap = read_snapshots(cfg.output_dir / "train.h5")
    if bad := [i for i in args.index if not 0 <= i < snap.n_mu]:
        raise SystemExit(f"--index {bad}: {cfg.output_dir / 'train.h5'} has trajectories "
                         f"0 .. {snap.n_mu - 1}")
    dec = LocalDecoder(args.model)
    man = DecoderManifold(dec, source=str(args.model))
    opts = rom_options(rom_settings(cfg))
    dt, scheme, steps = time_grid(snap)
    for i in args.index:
        X = snap.states[i]
        res, err, fail = run_rom(snap.problem(), man, snap.mu[i], "lspg", X, scheme=scheme,
                                 dt=dt, t_final=float(snap.t[-1]), options=opts, steps=steps)
        P = man.project(X[::10], res.x_ref)
        proj = np.linalg.norm(P - X[::10]) / np.linalg.norm(X[::10])
        print(f"mu = {snap.mu[i].tolist()}: Deep LSPG {100 * err:.2f} %, projection (every "
              f"10th step, through x_ref) {100 * proj:.2f} %, {res.wall_s:.0f} s {fail}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the prototype on a burgers2d training file")
    t.add_argument("snapshots", type=Path)
    t.add_argument("--out", type=Path, required=True, help="weights (.npz)")
    t.add_argument("--hold-out", type=int, default=2, help="trajectory left out (default 2: "
                   "mu = 1.05 of examples/burgers2d.toml)")
    t.add_argument("--hidden", choices=("conv", "dense"), default="conv")
    t.add_argument("--p", type=int, default=5)
    t.add_argument("--channels", type=int, default=8)
    t.add_argument("--window", type=int, default=3)
    t.add_argument("--epochs", type=int, default=125)
    t.add_argument("--anchor", type=int, default=320)
    t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("rom", help="Deep LSPG with it at trajectories of the training file")
    r.add_argument("config", type=Path)
    r.add_argument("model", type=Path)
    r.add_argument("--index", type=int, nargs="+", default=[2])
    args = parser.parse_args(argv)
    return train(args) if args.cmd == "train" else rom(args)


if __name__ == "__main__":
    raise SystemExit(main())
