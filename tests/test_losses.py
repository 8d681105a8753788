import pytest
import torch
import torch.nn.functional as F

from ficli.errors import ConfigError
from ficli.model.losses import (
    FINETUNE,
    PAPER_FINETUNE,
    PAPER_PRETRAIN,
    PRETRAIN,
    LossWeights,
    adversarial_loss,
    discriminator_loss,
    generator_loss,
    perceptual_from_env,
    resolve_k_max,
    tg_loss_direct,
    tg_loss_fft,
)
from ficli.model.perceptual import PerceptualLoss, ResNet152Features, VGG16Features, load_perceptual

from conftest import code_pickle


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest magnitude of the reference b."""
    return float((a - b).abs().max() / b.abs().max()) if b.numel() else 0.0


# --- total gradient loss ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k_max", [1, "N/2", "N", 5])
@pytest.mark.parametrize("shape", [(2, 3, 17, 12), (1, 1, 16, 33), (3, 2, 9, 9), (2, 1, 1, 7)])
def test_tg_fft_matches_direct_in_value_and_gradient(shape, k_max, dtype):
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(shape, dtype=dtype, generator=gen, requires_grad=True)
    target = torch.randn(shape, dtype=dtype, generator=gen)
    direct = tg_loss_direct(pred, target, k_max)
    (g_direct,) = torch.autograd.grad(direct, pred)
    fft = tg_loss_fft(pred, target, k_max)
    (g_fft,) = torch.autograd.grad(fft, pred)
    direct, fft = direct.detach(), fft.detach()
    assert fft.dtype == dtype and fft.shape == ()
    assert _rel(fft, direct) < 1e-5
    assert _rel(g_fft, g_direct) < 1e-5


def test_tg_per_image_and_channel():
    gen = torch.Generator().manual_seed(2)
    pred, target = torch.rand(3, 2, 10, 13, generator=gen), torch.rand(3, 2, 10, 13, generator=gen)
    per = tg_loss_fft(pred, target, "N/2", reduction="none")
    assert per.shape == (3, 2)
    assert _rel(per, tg_loss_direct(pred, target, "N/2", reduction="none")) < 1e-5
    torch.testing.assert_close(per.mean(), tg_loss_fft(pred, target, "N/2"))
    torch.testing.assert_close(per.sum(), tg_loss_fft(pred, target, "N/2", reduction="sum"))


@pytest.mark.parametrize("tg", [tg_loss_direct, tg_loss_fft])
def test_tg_by_hand(tg):
    # one row d = [0, 1, 3]: lag 1: 1² + 2², lag 2: 3² / 2; N_w = 3; a single row has no ΔH
    pred = torch.tensor([[[[0.0, 1.0, 3.0]]]], dtype=torch.float64)
    assert float(tg(pred, torch.zeros_like(pred), "N")) == pytest.approx((1 + 4 + 9 / 2) / 3)
    assert float(tg(pred, torch.zeros_like(pred), 1)) == pytest.approx((1 + 4) / 3)
    # the same as a column counts along the height
    col = pred.transpose(-2, -1)
    assert float(tg(col, torch.zeros_like(col), "N")) == pytest.approx((1 + 4 + 9 / 2) / 3)


@pytest.mark.parametrize("tg", [tg_loss_direct, tg_loss_fft])
def test_tg_is_zero_for_identical_images_and_for_a_constant_offset(tg):
    x = torch.rand(2, 1, 16, 20)
    assert float(tg(x, x.clone())) == 0.0
    assert float(tg(x + 0.25, x)) == pytest.approx(0.0, abs=1e-9)  # differences of d only


def test_tg_punishes_invented_texture_more_than_blur_of_equal_mse():
    # what the loss is for: at equal MSE, noise-like texture costs more than a smooth error
    n = 64
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(n).float(), torch.arange(n).float(), indexing="ij")
    x = torch.zeros(n, n)
    for cy, cx, s in torch.rand(12, 3, generator=gen).tolist():
        x += torch.exp(-((yy - cy * n) ** 2 + (xx - cx * n) ** 2) / (2 * (2 + 3 * s) ** 2))
    x = x[None, None]
    r = torch.arange(-6, 7).float()
    g = torch.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()
    blurred = F.conv2d(F.pad(x, (6, 6, 6, 6), mode="reflect"), (g[:, None] * g[None, :])[None, None])
    noise = torch.randn(x.shape, generator=gen)
    textured = x + noise * torch.sqrt(F.mse_loss(blurred, x) / noise.square().mean())
    torch.testing.assert_close(F.mse_loss(textured, x), F.mse_loss(blurred, x))
    assert float(tg_loss_fft(textured, x, "N/2")) > 1.3 * float(tg_loss_fft(blurred, x, "N/2"))


@pytest.mark.parametrize(("k_max", "n", "k"), [("N/2", 9, 4), ("N/2", 10, 5), ("N", 9, 8), (100, 9, 8), (1, 9, 1), (5, 9, 5), ("N", 1, 0), (1, 1, 0)])
def test_resolve_k_max(k_max, n, k):
    assert resolve_k_max(k_max, n) == k


@pytest.mark.parametrize("bad", [0, -1, "N/3", "n", True, 2.5, None])
def test_bad_k_max_is_refused(bad):
    with pytest.raises(ConfigError, match="k_max"):
        resolve_k_max(bad, 8)
    with pytest.raises(ConfigError, match="k_max"):
        LossWeights(k_max=bad)


def test_tg_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\).*\(1, 1, 8, 9\)"):
        tg_loss_fft(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


# --- least-squares GAN --------------------------------------------------------------------------


def test_lsgan_values():
    d_real, d_fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # ½·mean([0, 1]) + ½·mean([0, 4])
    assert float(discriminator_loss(d_real, d_fake)) == pytest.approx(1.25)
    # ½·mean([1, 1])
    assert float(adversarial_loss(d_fake)) == pytest.approx(0.5)
    assert float(discriminator_loss(torch.ones(4), torch.zeros(4))) == 0.0
    assert float(adversarial_loss(torch.ones(4))) == 0.0


# --- weights and generator loss -----------------------------------------------------------------


def test_presets_follow_the_design_table_without_perceptual_terms():
    assert (PRETRAIN.adv, PRETRAIN.mse, PRETRAIN.smooth_l1, PRETRAIN.tg) == (1e-3, 1, 1, 1)
    assert (FINETUNE.adv, FINETUNE.mse, FINETUNE.smooth_l1, FINETUNE.tg) == (1, 10, 10, 10)
    assert PRETRAIN.vgg == PRETRAIN.resnet == FINETUNE.vgg == FINETUNE.resnet == 0
    assert (PAPER_PRETRAIN.vgg, PAPER_PRETRAIN.resnet, PAPER_FINETUNE.vgg, PAPER_FINETUNE.resnet) == (8e-3, 1e-2, 8, 1)
    assert PRETRAIN.k_max == FINETUNE.k_max == "N/2"


def test_generator_loss_is_the_weighted_sum_of_its_terms():
    gen = torch.Generator().manual_seed(3)
    pred = torch.rand(2, 1, 16, 16, generator=gen, requires_grad=True)
    target = torch.rand(2, 1, 16, 16, generator=gen)
    d_fake = torch.tensor([0.3, -0.2])
    w = LossWeights(adv=0.5, mse=2.0, smooth_l1=3.0, tg=0.1, k_max=1)
    total, terms = generator_loss(pred, target, d_fake, w)
    assert set(terms) == {"mse", "smooth_l1", "tg", "adv", "total"}
    assert all(isinstance(v, float) for v in terms.values())
    assert terms["mse"] == pytest.approx(float(F.mse_loss(pred.detach(), target)))
    assert terms["tg"] == pytest.approx(float(tg_loss_direct(pred.detach(), target, 1)), rel=1e-5)
    assert terms["adv"] == pytest.approx(float(adversarial_loss(d_fake)))
    expected = 0.5 * terms["adv"] + 2 * terms["mse"] + 3 * terms["smooth_l1"] + 0.1 * terms["tg"]
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6) and terms["total"] == pytest.approx(expected, rel=1e-6)
    (grad,) = torch.autograd.grad(total, pred)
    assert grad.abs().sum() > 0


def test_generator_loss_without_critic_scores():
    x = torch.rand(1, 1, 8, 8)
    _, terms = generator_loss(x, x.flip(-1), None, LossWeights(adv=0.0))
    assert "adv" not in terms
    with pytest.raises(ValueError, match="d_fake"):
        generator_loss(x, x, None, LossWeights(adv=1e-3))


def test_generator_loss_with_perceptual_weight_but_no_extractor_is_refused():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ConfigError, match="perceptual"):
        generator_loss(x, x, None, LossWeights(adv=0.0, vgg=1.0))


# --- perceptual extractors ----------------------------------------------------------------------


def _meta_state(cls) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return cls().state_dict()


def _tiny_file_state(cls, extra: dict[str, tuple] = {}) -> dict[str, torch.Tensor]:
    """torchvision-shaped state dict whose tensors share one-element storages: a file of a few kB."""
    out = {}
    for i, (k, v) in enumerate({**_meta_state(cls), **{k: torch.empty(s, device="meta") for k, s in extra.items()}}.items()):
        out[k] = torch.full((), i % 7, dtype=v.dtype).expand(v.shape)
    return out


TV_VGG16_EXTRA = {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,), "classifier.3.weight": (4096, 4096),
                  "classifier.3.bias": (4096,), "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}
TV_RESNET152_EXTRA = {"fc.weight": (1000, 2048), "fc.bias": (1000,)}


def test_extractors_have_torchvision_names_and_sizes():
    vgg = _meta_state(VGG16Features)
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision vgg16().features
    assert set(vgg) == {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    assert sum(v.numel() for v in vgg.values()) == 14_714_688  # torchvision's 138,357,544 minus classifier
    res = _meta_state(ResNet152Features)
    params = {k: v for k, v in res.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert sum(v.numel() for v in params.values()) + 2048 * 1000 + 1000 == 60_192_808  # torchvision's resnet152
    assert res["conv1.weight"].shape == (64, 3, 7, 7)
    assert res["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert res["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert res["layer3.35.conv3.weight"].shape == (1024, 256, 1, 1)
    assert res["layer4.2.bn3.running_var"].shape == (2048,)
    assert "layer3.36.conv1.weight" not in res and "layer4.3.conv1.weight" not in res


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A vgg16 state dict with torchvision's names and shapes (random values) and its classifier."""
    torch.manual_seed(0)
    state = {**_tiny_file_state(VGG16Features, TV_VGG16_EXTRA), **VGG16Features().state_dict()}
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


def test_load_vgg16_accepts_torchvision_state_dict(vgg_file):
    path, state = vgg_file
    vgg = load_perceptual("vgg16", path)
    assert torch.equal(vgg.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in vgg.parameters())
    assert not vgg.train().training  # stays frozen
    assert vgg(torch.rand(1, 1, 32, 32)).shape == (1, 512, 2, 2)


def test_load_resnet152_accepts_torchvision_state_dict_and_safetensors(tmp_path):
    state = _tiny_file_state(ResNet152Features, TV_RESNET152_EXTRA)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # older torchvision files
    torch.save(old, tmp_path / "resnet152.pth")
    res = load_perceptual("resnet152", tmp_path / "resnet152.pth")
    assert torch.equal(res.layer4[2].conv3.weight, state["layer4.2.conv3.weight"].contiguous())
    assert not any(p.requires_grad for p in res.parameters()) and not res.training
    assert res(torch.rand(1, 1, 32, 32)).shape == (1, 2048, 1, 1)

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in _tiny_file_state(VGG16Features).items()}, tmp_path / "vgg16.safetensors")
    assert isinstance(load_perceptual("vgg16", tmp_path / "vgg16.safetensors"), VGG16Features)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.__setitem__("features.0.w", s.pop("features.0.weight")), "missing features.0.weight"),
        (lambda s: s.pop("features.28.bias"), "missing features.28.bias"),
        (lambda s: s.__setitem__("features.0.weight", torch.zeros(64, 1, 3, 3)), "wrong shape features.0.weight"),
        (lambda s: s.__setitem__("features.30.weight", torch.zeros(3)), "unexpected features.30.weight"),
    ],
)
def test_load_perceptual_refuses_other_state_dicts(tmp_path, edit, message):
    state = _tiny_file_state(VGG16Features, TV_VGG16_EXTRA)
    edit(state)
    torch.save(state, tmp_path / "vgg.pth")
    with pytest.raises(ConfigError, match=message):
        load_perceptual("vgg16", tmp_path / "vgg.pth")


def test_load_perceptual_refuses_a_resnet_file_as_vgg(tmp_path):
    torch.save(_tiny_file_state(ResNet152Features), tmp_path / "r.pth")
    with pytest.raises(ConfigError, match="not torchvision's vgg16"):
        load_perceptual("vgg16", tmp_path / "r.pth")




@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_load_perceptual_never_unpickles_code(tmp_path, how):
    path = code_pickle(tmp_path / "vgg16.pth", "features.0.weight", how, protocol=2)
    with pytest.raises(ConfigError, match="not a readable weights file"):
        load_perceptual("vgg16", path)
    assert not (tmp_path / "marker").exists()


def test_load_perceptual_refuses_missing_file_and_unknown_kind(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*FICLI_VGG16_WEIGHTS"):
        load_perceptual("vgg16", tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="unknown perceptual network"):
        load_perceptual("vgg19", tmp_path / "nope.pth")


def test_perceptual_requested_without_a_path_is_refused(monkeypatch):
    monkeypatch.delenv("FICLI_VGG16_WEIGHTS", raising=False)
    monkeypatch.delenv("FICLI_RESNET152_WEIGHTS", raising=False)
    assert perceptual_from_env(PRETRAIN) is None
    with pytest.raises(ConfigError) as err:
        perceptual_from_env(PAPER_PRETRAIN)
    assert "set FICLI_VGG16_WEIGHTS=/path/to/vgg16-397923af.pth (torchvision ImageNet weights) or give --vgg-weight 0" in str(err.value)
    with pytest.raises(ConfigError, match="FICLI_RESNET152_WEIGHTS=.*--resnet-weight 0"):
        perceptual_from_env(LossWeights(resnet=1.0))


def test_perceptual_from_env_reads_the_variable_and_feeds_generator_loss(monkeypatch, vgg_file):
    monkeypatch.setenv("FICLI_VGG16_WEIGHTS", str(vgg_file[0]))
    monkeypatch.delenv("FICLI_RESNET152_WEIGHTS", raising=False)
    weights = LossWeights(adv=0.0, vgg=0.5)
    perceptual = perceptual_from_env(weights)
    assert isinstance(perceptual, PerceptualLoss) and perceptual.resnet is None
    gen = torch.Generator().manual_seed(4)
    pred = torch.rand(1, 1, 32, 32, generator=gen, requires_grad=True)
    target = torch.rand(1, 1, 32, 32, generator=gen)
    total, terms = generator_loss(pred, target, None, weights, perceptual)
    assert terms["vgg"] > 0
    assert terms["total"] == pytest.approx(terms["mse"] + terms["smooth_l1"] + terms["tg"] + 0.5 * terms["vgg"], rel=1e-5)
    total.backward()
    assert pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in perceptual.parameters())
    with pytest.raises(ConfigError, match="--resnet-weight 0"):
        generator_loss(pred, target, None, LossWeights(adv=0.0, resnet=1.0), perceptual)
