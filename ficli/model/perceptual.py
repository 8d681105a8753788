"""Perceptual feature networks for the content loss: VGG16 and ResNet152 on ImageNet weights.

The paper's content loss has two perceptual terms, feature MSE on VGG16's relu5_3 and on
ResNet152's last block (docs/DESIGN.md section 3). The networks are written out here with
torchvision's parameter names, so that its ImageNet weight files load without torchvision
(`load_perceptual`: safetensors, or a state dict read with `weights_only=True`); `PerceptualLoss`
runs them frozen. No such weights ship with ficli: `losses.perceptual_from_env` says how to give
them, and random features are never used.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ficli.errors import ConfigError

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


PERCEPTUAL = {
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
    if kind not in PERCEPTUAL:
        raise ConfigError(f"unknown perceptual network {kind!r}; choose one of {', '.join(PERCEPTUAL)}")
    cls, ignored, env, filename, _ = PERCEPTUAL[kind]
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
                _, _, env, filename, option = PERCEPTUAL[kind]
                raise ConfigError(f"no {kind} extractor loaded; set {env}=/path/to/{filename} or give {option} 0")
            with torch.no_grad():
                ref = net(target)
            out[name] = F.mse_loss(net(pred), ref)
        return out
