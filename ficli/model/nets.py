"""FI-GAN: the generator and the discriminator (docs/DESIGN.md section 2). Torch only.

Generator G, (B, C, H, W) -> (B, C, H, W), H and W multiples of 4:

    x ─ head 3×3 ─ 2 × stride-2 3×3 ─ h ─ 7 residual dense blocks ─ global fusion (1×1, 3×3) ─ (+h)
      ─ 2 × (3×3 conv, PixelShuffle ×2) ─ tail 3×3 ─ × out_scale ─ (+x) ─ x̂

The body runs at 1/4 of the input's width and height. The output is the input plus a predicted
correction (a residual over the bicubic image). Every convolution of G carries spectral
normalisation while training; `fold_spectral_norm` turns it into plain weights for inference, and
model files hold the folded weights (see `ficli.model.modelfile`).

Default config (channels=1, features=64, growth=32, layers=4, blocks=7), computed, not guessed
(`count_parameters(Generator())`, `receptive_field(GeneratorConfig())`; tests/test_nets.py checks
both numbers):

    generator parameters      1,426,690
    discriminator parameters  5,210,561   (DiscriminatorConfig())
    receptive field radius    130 px      (an output pixel depends on inputs at most 130 px away
                                           along each axis, i.e. a window of at most 261 × 261 px)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


@dataclass(frozen=True)
class GeneratorConfig:
    channels: int = 1  # image channels in and out (grayscale)
    features: int = 64  # F: feature channels of the body
    growth: int = 32  # G: channels each dense layer adds
    layers: int = 4  # L: dense conv layers per residual dense block
    blocks: int = 7  # residual dense blocks
    # Conditioned on the blur scale s of its input (docs/DESIGN.md section 8): a constant map (s - 1) / 3
    # beside the image at the head, as SRMD (Zhang et al., CVPR 2018) feeds its degradation maps.
    scale_input: bool = False
    # Trained with the coarse content kept (`ficli train --keep-coarse`, docs/DEGRADATIONS.md): its loss
    # saw y − B_s(y − x), so only that is an image; whoever runs it applies `degrade.keep_coarse` after it.
    coarse_kept: bool = False

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (two stride-2 convolutions)."""
        return 4


@dataclass(frozen=True)
class DiscriminatorConfig:
    channels: int = 1
    features: int = 64  # channels of the first conv; doubled at every stride-2 stage


def _act() -> nn.Module:
    # Leaky rather than plain ReLU: no dead units, and the receptive-field probe sees every path.
    return nn.LeakyReLU(0.2, inplace=True)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class ResidualDenseBlock(nn.Module):
    """RDN block: L densely connected conv+act layers, 1×1 local fusion back to F, local residual."""

    def __init__(self, features: int, growth: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(_conv(features + i * growth, growth, 3), _act()) for i in range(layers)
        )
        self.fusion = _conv(features + layers * growth, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return x + self.fusion(torch.cat(feats, 1))


class Generator(nn.Module):
    """FI-GAN generator: (B, C, H, W) -> (B, C, H, W), the input plus a predicted correction.

    H and W must be multiples of `config.multiple` (4); forward() raises ValueError otherwise. It
    does not pad: the caller does (`ficli.inference.engine` pads to multiples of 4 and crops back).

    `spectral_norm=True` (training) puts spectral normalisation on every convolution;
    `spectral_norm=False` builds plain convolutions with the same parameter names as a folded
    model, which is what `ficli.model.modelfile.load_model` uses.

    The correction is multiplied by `out_scale`, a learnable scalar outside spectral norm that
    starts at 0 (ReZero-style): a fresh generator is exactly the identity, so training starts from
    the bicubic image, and the tail conv keeps ordinary random weights (spectral norm of an
    all-zero weight would divide by zero).
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig(), spectral_norm: bool = True):
        super().__init__()
        c, f = config, config.features
        self.config = config
        self.head = _conv(c.channels + int(c.scale_input), f, 3)
        self.down = nn.Sequential(_conv(f, f, 3, stride=2), _act(), _conv(f, f, 3, stride=2), _act())
        self.blocks = nn.ModuleList(ResidualDenseBlock(f, c.growth, c.layers) for _ in range(c.blocks))
        self.fusion = nn.Sequential(_conv(c.blocks * f, f, 1), _conv(f, f, 3))
        self.up = nn.Sequential(
            _conv(f, 4 * f, 3), nn.PixelShuffle(2), _act(),
            _conv(f, 4 * f, 3), nn.PixelShuffle(2), _act(),
        )
        self.tail = _conv(f, c.channels, 3)
        self.out_scale = nn.Parameter(torch.zeros(()))
        if spectral_norm:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    _spectral_norm(m)

    def forward(self, x: torch.Tensor, scale: float | torch.Tensor | None = None) -> torch.Tensor:
        """`scale`: the blur scale s of the input (a number, or one per image as a (B,) tensor);
        required by a generator with `config.scale_input`, refused by one without."""
        m = self.config.multiple
        if x.ndim != 4 or x.shape[1] != self.config.channels or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"Generator expects (B, {self.config.channels}, H, W) with H and W multiples of {m}, "
                f"got {tuple(x.shape)}; pad the input first (ficli.inference.engine does)"
            )
        if self.config.scale_input:
            if scale is None:
                raise ValueError("this generator is conditioned on the blur scale: call it as G(x, scale)")
            h = self.head(torch.cat([x, scale_map(scale, x)], 1))
        elif scale is not None:
            raise ValueError("this generator takes no blur scale (it was not trained with one)")
        else:
            h = self.head(x)
        return x + self.out_scale * self.tail(self.up(self.body(self.down(h))))

    def body(self, h: torch.Tensor) -> torch.Tensor:
        """The residual dense blocks, global fusion and global residual, at 1/4 of the input's size."""
        b, outs = h, []
        for block in self.blocks:
            b = block(b)
            outs.append(b)
        return self.fusion(torch.cat(outs, 1)) + h


def scale_map(scale: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The conditioning channel: (s - 1) / 3 everywhere, (B, 1, H, W) like `like` (so s in [1, 4]
    maps to [0, 1]); `scale` is a number or a (B,) tensor."""
    b, _, h, w = like.shape
    s = torch.as_tensor(scale, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)
    if s.shape[0] not in (1, b):
        raise ValueError(f"one scale or one per image expected, got {s.shape[0]} for a batch of {b}")
    return ((s - 1) / 3).expand(b, 1, h, w)


class Discriminator(nn.Module):
    """SRGAN-style fully convolutional critic: (B, C, H, W) -> scores (B,), no sigmoid (LSGAN).

    Eight 3×3 convs (strides 1, 2, 1, 2, ...; channels F, F, 2F, 2F, 4F, 4F, 8F, 8F) with
    LeakyReLU(0.2), global average pooling, then SRGAN's two dense layers as 1×1 convs. No batch
    norm (a score should not depend on what else is in the batch); spectral norm on every conv
    keeps the critic Lipschitz and training stable. Any input size works.
    """

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        f, layers, cin = config.features, [], config.channels
        for i in range(8):
            cout = f * 2 ** (i // 2)
            layers += [nn.Conv2d(cin, cout, 3, stride=1 + i % 2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Conv2d(cin, 2 * cin, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(2 * cin, 1, 1)
        )
        # Spectral norm on the critic too (a project choice; SRGAN's critic uses batch norm): without
        # either, the least-squares critic diverged in stage 1 at lr 1e-3 (critic loss 2.8e7 in the
        # third epoch of a CPU run) and took the generator with it.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _spectral_norm(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.channels:
            raise ValueError(f"Discriminator expects (B, {self.config.channels}, H, W), got {tuple(x.shape)}")
        h = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.head(h).flatten()


def fold_spectral_norm(model: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrisation in `model` by its plain weight, in place.

    The folded weight is W / σ with σ from the stored power-iteration vectors (what eval mode
    uses), so a folded model gives the same outputs as the unfolded one in eval mode. Returns
    `model`; a model without spectral norm is returned unchanged.

    Fold the model you will run, not a deepcopy of one that goes on training: copies share torch's
    parametrised class, and folding one breaks the other. To save weights, use `folded_state_dict`.
    """
    was_training = model.training
    model.eval()  # in train mode reading the weight would run one more power iteration
    with torch.no_grad():
        for m in model.modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model.train(was_training)


def folded_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict `model` would have after `fold_spectral_norm`, leaving `model` unchanged.

    Spectral-norm weights are read as W / σ in eval mode under their plain names ("head.weight");
    the power-iteration vectors are left out. (Folding a deepcopy is not a substitute: copies share
    torch's parametrised class, and removing the parametrisation from one breaks the other.)
    """
    was_training = model.training
    model.eval()
    out = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if ".parametrizations." not in key:
                out[key] = value.detach()
            elif key.endswith(".original"):
                owner, _, rest = key.partition(".parametrizations.")
                name = rest.removesuffix(".original")
                out[f"{owner}.{name}"] = getattr(model.get_submodule(owner), name).detach()
    model.train(was_training)
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in the model's parameters (spectral-norm vectors are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def receptive_field(config: GeneratorConfig = GeneratorConfig()) -> int:
    """Receptive-field radius r of the generator in pixels, measured by a gradient probe.

    An output pixel depends only on input pixels at most r pixels away along each axis (a window
    of at most (2r+1) × (2r+1)); a tiled engine needs an overlap of at least r per side for tiles
    to match the whole-image pass exactly.

    The probe builds a generator with random positive weights (so no two paths can cancel) in
    float64, backpropagates from one output pixel near the centre of a zero-padded input, and
    measures how far the nonzero input gradient reaches; it does so for the four positions of a
    pixel on the 4-pixel grid and returns the largest. The radius depends on the layers and blocks,
    not on the channel widths, so the probe runs with at most 4 features and growth 4. The input
    starts at 512 × 512 and doubles while the gradient reaches its border.
    """
    probe = replace(config, channels=1, features=min(config.features, 4), growth=min(config.growth, 4), scale_input=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = Generator(probe, spectral_norm=False).double()
        with torch.no_grad():
            for name, p in g.named_parameters():
                if name.endswith("weight"):
                    fan_in = math.prod(p.shape[1:])
                    p.copy_(torch.rand_like(p) / fan_in)
                else:
                    p.fill_(1.0) if name == "out_scale" else p.zero_()
        size = 512
        while True:
            x = torch.rand(1, 1, size, size, dtype=torch.float64, requires_grad=True)
            y, radius, touches_border = g(x), 0, False
            for phase in range(4):
                c = size // 2 + phase
                (grad,) = torch.autograd.grad(y[0, 0, c, c], x, retain_graph=phase < 3)
                rows, cols = torch.nonzero(grad[0, 0], as_tuple=True)
                lo, hi = int(min(rows.min(), cols.min())), int(max(rows.max(), cols.max()))
                radius = max(radius, c - lo, hi - c)
                touches_border |= lo == 0 or hi == size - 1
            if not touches_border:
                return radius
            size *= 2
