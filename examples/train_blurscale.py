"""Train the learned blur-scale estimator (`ficli/image/blurscale_mlp.npz`) on the training sources.

    python examples/train_blurscale.py @examples/splits/robust_train.txt [--per-image 30] [--out F]

Each training image gives `--per-image` saved files of known blur scale (examples/savedfiles.py: a
kernel at s or a native PSF, noise, a file type); their features (`blurscale.features`: 32 bands of
log power as measured and 32 with the grey-level grid's rounding noise taken off, and that noise's
share) and log s train a 65-64-64-2 MLP by Gaussian negative log-likelihood, so that it gives log s
and its own spread. A tenth of the images is kept apart: the spread is scaled so that 68 % of their
true s fall inside the 68 % interval, and the fit on them is printed. About ten minutes on one CPU
core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from savedfiles import FILE_KINDS, VIDEO_KINDS, load_unit, simulate  # the example beside this one

from ficli.image import io
from ficli.image.blurscale import MLP_FILE, features


def dataset(paths, per_image: int, seed: int, kinds=FILE_KINDS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for path in paths:
        x = load_unit(path, side=384)
        for _ in range(per_image):
            y, s, _ = simulate(x, rng, kinds=kinds)
            f = features([y])
            if f is not None and f[0] is not None:
                xs.append(f[0])
                ys.append(np.log(s))
    return np.array(xs, np.float32), np.array(ys, np.float32)


def fit(x: np.ndarray, y: np.ndarray, steps: int, seed: int) -> tuple[torch.nn.Sequential, np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    for step in range(steps):
        idx = torch.randint(len(xt), (512,))
        out = net(xt[idx])
        mu, log_sigma = out[:, 0], out[:, 1].clamp(-6, 2)
        loss = (0.5 * ((yt[idx] - mu) / log_sigma.exp()) ** 2 + log_sigma).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == steps // 2:
            for g in opt.param_groups:
                g["lr"] = 1e-3
    return net, mean, std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--per-image", type=int, default=30)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(MLP_FILE))
    parser.add_argument("--h264", action="store_true", help="also H.264-coded 8-bit frames (savedfiles.VIDEO_KINDS); not in the shipped file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = [item.path for item in io.collect_inputs(args.inputs, recursive=True)]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(paths))
    check = {int(i) for i in order[: max(1, len(paths) // 10)]}
    started = time.time()
    kinds = {**FILE_KINDS, **VIDEO_KINDS} if args.h264 else FILE_KINDS
    xtr, ytr = dataset([p for i, p in enumerate(paths) if i not in check], args.per_image, args.seed, kinds)
    xte, yte = dataset([p for i, p in enumerate(paths) if i in check], args.per_image, args.seed + 1, kinds)
    print(f"{len(xtr)} training and {len(xte)} check samples from {len(paths)} images in {time.time() - started:.0f} s")
    net, mean, std = fit(xtr, ytr, args.steps, args.seed)
    with torch.no_grad():
        out = net(torch.from_numpy((xte - mean) / std)).numpy()
    s_true, s_est = np.exp(yte), np.clip(np.exp(out[:, 0]), 1, 6)
    z = np.abs(yte - out[:, 0]) / np.exp(np.clip(out[:, 1], -6, 2))
    widen = max(1.0, float(np.quantile(z, 0.6827)))  # the network's own spread is too confident off its training images
    print(f"check images: within ±0.5 {np.mean(np.abs(s_est - s_true) <= 0.5):.1%}, mean |error| {np.mean(np.abs(s_est - s_true)):.2f}, "
          f"inside the 68 % interval {np.mean(z <= 1):.1%} before widening it ×{widen:.2f}")
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    arrays = {"mean": mean, "std": std, "widen": np.float32(widen)}
    for i, layer in enumerate(layers, 1):
        arrays[f"W{i}"] = layer.weight.detach().numpy().T.astype(np.float32)
        arrays[f"b{i}"] = layer.bias.detach().numpy().astype(np.float32)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out} ({time.time() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
