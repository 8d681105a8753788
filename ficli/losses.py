"""Losses of FI-GAN (DESIGN.md section 3): total gradient, least-squares GAN, content, perceptual.

Plain functions on tensors; images are (B, C, H, W). With y the degraded input, x the sharp
target and x̂ = G(y):

    L_D   = ½·E[(D(x) − 1)²] + ½·E[D(x̂)²]                      discriminator_loss
    L_adv = ½·E[(D(x̂) − 1)²]                                    adversarial_loss
    L_X   = α·MSE + β·SmoothL1 + γ·VGG16 MSE + η·ResNet152 MSE   content terms
    L_G   = L_X + ε·L_adv + θ·L_TG                               generator_loss

The perceptual terms need torchvision's ImageNet weight files (see `load_perceptual`); they are
off (γ = η = 0) in the presets, because no such weights ship with ficli, and a run that asks for
them without a file stops with a ConfigError instead of using random feature extractors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ficli.errors import ConfigError

KMax = int | str  # 1, 5, ... or "N/2" or "N"


# --- total gradient loss ------------------------------------------------------------------------


def resolve_k_max(k_max: KMax, n: int) -> int:
    """The largest lag K used along an axis of length n.

    "N/2" → floor(n/2) (the paper's best setting), "N" → n − 1 (every lag: d[i+k] needs k ≤ n − 1),
    an int k ≥ 1 → min(k, n − 1). An axis of length 1 has no lags (K = 0).
    """
    if k_max == "N":
        k = n - 1
    elif k_max == "N/2":
        k = n // 2
    elif isinstance(k_max, int) and not isinstance(k_max, bool) and k_max >= 1:
        k = k_max
    else:
        raise ConfigError(f'k_max must be a positive integer, "N/2" or "N", got {k_max!r}')
    return max(0, min(k, n - 1))


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(
            f"expected pred and target of the same shape (B, C, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f'reduction must be "mean", "sum" or "none", got {reduction!r}')


def _lag_sum_direct(d: torch.Tensor, k: int) -> torch.Tensor:
    """Σ_{lag=1..k} (1/lag) Σ_rows Σ_i (d[i+lag] − d[i])² along the last axis: (B, C, R, N) -> (B, C)."""
    total = d.new_zeros(d.shape[:-2])
    for lag in range(1, k + 1):
        total = total + (d[..., lag:] - d[..., :-lag]).square().sum((-2, -1)) / lag
    return total


def _lag_sum_fft(d: torch.Tensor, k: int) -> torch.Tensor:
    """The same sum as `_lag_sum_direct`, for all lags at once in O(R·N·log N).

    Σ_{i<N−k} (d[i+k] − d[i])² = Σ_{k≤i<N} d[i]² + Σ_{i<N−k} d[i]² − 2·r_k, with both partial sums
    read off the cumulative sum of d² and the autocorrelation r_k of every lag from one real FFT of
    the row zero-padded to 2N (no wrap-around for lags < N). The rows' power spectra are summed
    before the inverse FFT, since only the sum over rows is needed.
    """
    n = d.shape[-1]
    if k == 0:
        return d.new_zeros(d.shape[:-2])
    lags = torch.arange(1, k + 1, device=d.device)
    csum = F.pad(torch.cumsum(d * d, -1), (1, 0))  # csum[..., m] = Σ_{i<m} d[i]²
    partial = (csum[..., n : n + 1] - csum[..., lags]) + csum[..., n - lags]  # (B, C, R, k)
    spec = torch.fft.rfft(d, n=2 * n)
    power = (spec.real.square() + spec.imag.square()).sum(-2)  # |D|² summed over rows, (B, C, n+1)
    autocorr = torch.fft.irfft(power, n=2 * n)[..., 1 : k + 1]  # (B, C, k)
    return ((partial.sum(-2) - 2 * autocorr) / lags).sum(-1)


def _tg(pred, target, k_max, lag_sum, reduction, dtype=None) -> torch.Tensor:
    _check_pair(pred, target)
    d = (pred - target).to(dtype or pred.dtype)
    nh, nw = d.shape[-2:]
    delta_w = lag_sum(d, resolve_k_max(k_max, nw))  # along the width, summed over rows
    delta_h = lag_sum(d.transpose(-2, -1), resolve_k_max(k_max, nh))  # along the height
    return _reduce(delta_w / nw + delta_h / nh, reduction).to(pred.dtype)


def tg_loss_direct(
    pred: torch.Tensor, target: torch.Tensor, k_max: KMax = "N/2", reduction: str = "mean"
) -> torch.Tensor:
    """Total gradient loss L_TG, summed lag by lag: O(H·W·K). The reference for `tg_loss_fft`.

    With d = pred − target, for each image and channel:

        ΔW = Σ_{k=1..K_w} (1/k) Σ_rows Σ_{i=1..N_w−k} (d[i+k] − d[i])²
        ΔH = Σ_{k=1..K_h} (1/k) Σ_cols Σ_{j=1..N_h−k} (d[j+k] − d[j])²
        L_TG = ΔW / N_w + ΔH / N_h

    pred, target: (B, C, H, W). k_max: see `resolve_k_max` (K_w from N_w = W, K_h from N_h = H).
    reduction: "mean" over batch and channel (a scalar), "sum", or "none" for (B, C).
    """
    return _tg(pred, target, k_max, _lag_sum_direct, reduction)


def tg_loss_fft(
    pred: torch.Tensor, target: torch.Tensor, k_max: KMax = "N/2", reduction: str = "mean"
) -> torch.Tensor:
    """Total gradient loss L_TG in O(H·W·log N) via FFT autocorrelation; same value as `tg_loss_direct`.

    Computed in float64, returned in pred's dtype; differentiable (autograd through torch.fft).
    pred, target: (B, C, H, W).
    """
    # float64: the expanded square cancels, and float32 would lose digits for smooth d
    return _tg(pred, target, k_max, _lag_sum_fft, reduction, dtype=torch.float64)


# --- least-squares GAN --------------------------------------------------------------------------


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """L_D = ½·E[(D(x) − 1)²] + ½·E[D(x̂)²] on critic scores (B,). Detach x̂ before D for this one."""
    return 0.5 * (d_real - 1).square().mean() + 0.5 * d_fake.square().mean()


def adversarial_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """L_adv = ½·E[(D(x̂) − 1)²] on critic scores (B,) of generated images."""
    return 0.5 * (d_fake - 1).square().mean()


# --- weights and the generator loss -------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """Weights of L_G = α·MSE + β·SmoothL1 + γ·VGG + η·ResNet + ε·L_adv + θ·L_TG, and TG's k_max."""

    adv: float = 1e-3  # ε
    mse: float = 1.0  # α
    smooth_l1: float = 1.0  # β
    vgg: float = 0.0  # γ (the paper: 8e-3 pretraining, 8 fine-tuning; needs ImageNet weights)
    resnet: float = 0.0  # η (the paper: 1e-2 pretraining, 1 fine-tuning; needs ImageNet weights)
    tg: float = 1.0  # θ
    k_max: KMax = "N/2"

    def __post_init__(self):
        resolve_k_max(self.k_max, 2)  # raises ConfigError on a bad k_max
        for name in ("adv", "mse", "smooth_l1", "vgg", "resnet", "tg"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"loss weight {name} must be >= 0, got {getattr(self, name)!r}")


# DESIGN.md's table with γ = η = 0, since no pretrained feature extractors ship with ficli.
# The paper's full values are PAPER_PRETRAIN / PAPER_FINETUNE (need FICLI_VGG16_WEIGHTS and
# FICLI_RESNET152_WEIGHTS).
PRETRAIN = LossWeights(adv=1e-3, mse=1.0, smooth_l1=1.0, vgg=0.0, resnet=0.0, tg=1.0)
FINETUNE = LossWeights(adv=1.0, mse=10.0, smooth_l1=10.0, vgg=0.0, resnet=0.0, tg=10.0)
PAPER_PRETRAIN = LossWeights(adv=1e-3, mse=1.0, smooth_l1=1.0, vgg=8e-3, resnet=1e-2, tg=1.0)
PAPER_FINETUNE = LossWeights(adv=1.0, mse=10.0, smooth_l1=10.0, vgg=8.0, resnet=1.0, tg=10.0)


def generator_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    d_fake: torch.Tensor | None,
    weights: LossWeights,
    perceptual: PerceptualLoss | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_G for a batch. pred, target: (B, C, H, W) in [0, 1]; d_fake: critic scores (B,) of pred.

    Returns the scalar loss to backpropagate and the unweighted terms as floats for logging
    ("mse", "smooth_l1", "tg", "adv" when d_fake is given, "vgg"/"resnet" when weighted, "total").
    d_fake may be None only when weights.adv == 0. A perceptual weight above 0 needs `perceptual`
    (see `perceptual_from_env`) holding that extractor, or it raises ConfigError.
    """
    _check_pair(pred, target)
    terms = {
        "mse": F.mse_loss(pred, target),
        "smooth_l1": F.smooth_l1_loss(pred, target),
        "tg": tg_loss_fft(pred, target, weights.k_max),
    }
    if d_fake is not None:
        terms["adv"] = adversarial_loss(d_fake)
    elif weights.adv > 0:
        raise ValueError("generator_loss needs the critic's scores d_fake when weights.adv > 0")
    if weights.vgg > 0 or weights.resnet > 0:
        if perceptual is None:
            raise ConfigError(
                "perceptual loss weights are above 0 but no feature extractor was given; "
                "load one with ficli.losses.perceptual_from_env or set the vgg/resnet weights to 0"
            )
        terms.update(perceptual(pred, target, vgg=weights.vgg > 0, resnet=weights.resnet > 0))
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    logged = torch.stack([t.detach().float() for t in (*terms.values(), total)]).tolist()  # one sync
    return total, dict(zip((*terms, "total"), logged))


# --- perceptual feature extractors --------------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _imagenet_input(x: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) in [0, 1] -> (B, 3, H, W) normalised with ImageNet's mean and std."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"perceptual features expect (B, 1 or 3, H, W) in [0, 1], got {tuple(x.shape)}")
    x = x.expand(-1, 3, -1, -1)
    mean = x.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class _Frozen(nn.Module):
    """A feature extractor that stays in eval mode and out of the optimiser."""

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(False)


class VGG16Features(_Frozen):
    """torchvision's vgg16().features[:30]: (B, 1 or 3, H, W) in [0, 1] -> relu5_3, (B, 512, H/16, W/16).

    Parameter names match torchvision's vgg16 state dict (features.0.weight, ..., features.28.bias).
    Build it with `load_perceptual("vgg16", path)`, which fills in the ImageNet weights.
    """

    # torchvision's configuration "D" up to conv5_3 (the last max-pool, features[30], is left out)
    _LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for v in self._LAYERS:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(_imagenet_input(x))


class _Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3×3 conv), same parameter names."""

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != 4 * planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, 4 * planes, 1, stride=stride, bias=False), nn.BatchNorm2d(4 * planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet152Features(_Frozen):
    """torchvision's resnet152 up to layer4: (B, 1 or 3, H, W) in [0, 1] -> (B, 2048, H/32, W/32).

    layer4 (the last convolutional stage, before pooling and fc) is the feature map the
    classifier sees; all of torchvision's convolutional weights are used, so the whole state dict
    but fc.* loads with strict checks. Parameter names match torchvision (conv1.weight,
    bn1.running_mean, layer1.0.conv1.weight, ..., layer4.2.bn3.bias). Build it with
    `load_perceptual("resnet152", path)`.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 8, 2), (256, 36, 2), (512, 3, 2))):
            layer = []
            for b in range(blocks):
                layer.append(_Bottleneck(cin, planes, stride if b == 0 else 1))
                cin = 4 * planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(_imagenet_input(x)))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


_PERCEPTUAL = {
    # kind: (class, torchvision keys that are not features and are ignored, env var, file name, option)
    "vgg16": (VGG16Features, "classifier.", "FICLI_VGG16_WEIGHTS", "vgg16-397923af.pth", "--vgg-weight"),
    "resnet152": (ResNet152Features, "fc.", "FICLI_RESNET152_WEIGHTS", "resnet152-394f9c45.pth", "--resnet-weight"),
}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch file read with weights_only=True (no pickles)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code; safetensors refuses a bad header
        raise ConfigError(
            f"{path} is not a readable weights file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "give torchvision's ImageNet state dict (.pth) or a .safetensors file"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} does not hold a plain state dict (names to tensors)")
    return state


def load_perceptual(kind: str, path: str | os.PathLike) -> VGG16Features | ResNet152Features:
    """A frozen ImageNet feature extractor ("vgg16" or "resnet152") from torchvision's weight file.

    Reads `path` (torchvision's .pth with `torch.load(weights_only=True)`, or .safetensors) and
    checks that every parameter and buffer name and shape matches torchvision's vgg16 / resnet152
    (classifier.* / fc.* are ignored, BatchNorm's num_batches_tracked may be absent). Raises
    ConfigError on a missing or unreadable file, missing or unexpected keys, or wrong shapes.
    Returns the extractor in eval mode with requires_grad False.
    """
    if kind not in _PERCEPTUAL:
        raise ConfigError(f"unknown perceptual network {kind!r}; choose one of {', '.join(_PERCEPTUAL)}")
    cls, ignored, env, filename, _ = _PERCEPTUAL[kind]
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} weights file {path} does not exist; set {env}=/path/to/{filename}")
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(ignored)}
    with torch.device("meta"):  # shapes only: no memory, no random init
        model = cls()
    expected = model.state_dict()
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros((), dtype=torch.long)  # absent from older torchvision files
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        problems = (
            [f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] * bool(missing)
            + [f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"] * bool(unexpected)
            + [f"wrong shape {'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}"] * bool(wrong)
        )
        raise ConfigError(
            f"{path} is not torchvision's {kind} ImageNet state dict ({'; '.join(problems)}); give {filename}"
        )
    state = {k: v.to(expected[k].dtype).contiguous() for k, v in state.items()}  # e.g. float16 files
    model.load_state_dict(state, strict=True, assign=True)
    return model.requires_grad_(False).eval()


class PerceptualLoss(nn.Module):
    """Feature MSE on frozen extractors: forward(pred, target) -> {"vgg": ..., "resnet": ...}.

    pred, target: (B, 1 or 3, H, W) in [0, 1]. Gradients flow to pred, not to the extractors.
    """

    def __init__(self, vgg: VGG16Features | None = None, resnet: ResNet152Features | None = None):
        super().__init__()
        self.vgg, self.resnet = vgg, resnet

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, vgg: bool = True, resnet: bool = True
    ) -> dict[str, torch.Tensor]:
        out = {}
        for name, wanted in (("vgg", vgg), ("resnet", resnet)):
            if not wanted:
                continue
            net = getattr(self, name)
            if net is None:
                kind = "vgg16" if name == "vgg" else "resnet152"
                _, _, env, filename, option = _PERCEPTUAL[kind]
                raise ConfigError(f"no {kind} extractor loaded; set {env}=/path/to/{filename} or give {option} 0")
            with torch.no_grad():
                ref = net(target)
            out[name] = F.mse_loss(net(pred), ref)
        return out


def perceptual_from_env(
    weights: LossWeights,
    vgg_path: str | os.PathLike | None = None,
    resnet_path: str | os.PathLike | None = None,
) -> PerceptualLoss | None:
    """The extractors that `weights` needs (None when weights.vgg == weights.resnet == 0).

    The weight files come from the arguments, else from FICLI_VGG16_WEIGHTS and
    FICLI_RESNET152_WEIGHTS. A needed file that is not given raises ConfigError saying how to give
    it or how to switch the term off; random features are never used.
    """
    if weights.vgg <= 0 and weights.resnet <= 0:
        return None
    nets = {}
    for name, kind, weight, path in (("vgg", "vgg16", weights.vgg, vgg_path), ("resnet", "resnet152", weights.resnet, resnet_path)):
        if weight <= 0:
            continue
        _, _, env, filename, option = _PERCEPTUAL[kind]
        path = path or os.environ.get(env)
        if not path:
            raise ConfigError(
                f"the {kind} perceptual term (weight {weight:g}) needs ImageNet weights: "
                f"set {env}=/path/to/{filename} (torchvision ImageNet weights) or give {option} 0"
            )
        nets[name] = load_perceptual(kind, path)
    return PerceptualLoss(**nets)
