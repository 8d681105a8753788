"""Losses of FI-GAN (docs/DESIGN.md section 3): total gradient, least-squares GAN, content, perceptual.

Plain functions on tensors; images are (B, C, H, W). With y the degraded input, x the sharp
target and x̂ = G(y):

    L_D   = ½·E[(D(x) − 1)²] + ½·E[D(x̂)²]                      discriminator_loss
    L_adv = ½·E[(D(x̂) − 1)²]                                    adversarial_loss
    L_X   = α·MSE + β·SmoothL1 + γ·VGG16 MSE + η·ResNet152 MSE   content terms
    L_G   = L_X + ε·L_adv + θ·L_TG                               generator_loss

The perceptual terms need torchvision's ImageNet weight files and the feature networks of
`ficli.model.perceptual` (`perceptual_from_env` loads them); they are off (γ = η = 0) in the presets,
because no such weights ship with ficli, and a run that asks for them without a file stops with a
ConfigError instead of using random feature extractors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ficli.errors import ConfigError
from ficli.model.perceptual import PERCEPTUAL, PerceptualLoss, load_perceptual

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


# docs/DESIGN.md's table (section 3) with γ = η = 0, since no pretrained feature extractors ship with ficli.
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
                "load one with ficli.model.losses.perceptual_from_env or set the vgg/resnet weights to 0"
            )
        terms.update(perceptual(pred, target, vgg=weights.vgg > 0, resnet=weights.resnet > 0))
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    logged = torch.stack([t.detach().float() for t in (*terms.values(), total)]).tolist()  # one sync
    return total, dict(zip((*terms, "total"), logged))


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
        _, _, env, filename, option = PERCEPTUAL[kind]
        path = path or os.environ.get(env)
        if not path:
            raise ConfigError(
                f"the {kind} perceptual term (weight {weight:g}) needs ImageNet weights: "
                f"set {env}=/path/to/{filename} (torchvision ImageNet weights) or give {option} 0"
            )
        nets[name] = load_perceptual(kind, path)
    return PerceptualLoss(**nets)
