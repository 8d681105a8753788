import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.utils import parametrize

from ficli.errors import ModelFileError
from ficli.model.modelfile import load_model, model_info, save_model
from ficli.model.nets import Generator, GeneratorConfig, count_parameters

from conftest import code_pickle

CFG = GeneratorConfig(features=8, growth=4, layers=2, blocks=2)
META = {"scale": 4, "stages": [{"stage": "pretrain", "epochs": 3}], "val_psnr": 31.5}


def _trained_like(config: GeneratorConfig = CFG) -> Generator:
    torch.manual_seed(0)
    g = Generator(config)
    with torch.no_grad():
        g.out_scale.fill_(0.3)
    for _ in range(2):  # move spectral norm's u and v from their initial values
        g(torch.rand(1, config.channels, 16, 16))
    return g


@pytest.fixture
def saved(tmp_path):
    g = _trained_like()
    return g, save_model(tmp_path / "m.safetensors", g, CFG, META)


def test_round_trip_gives_identical_outputs(saved):
    g, path = saved
    loaded, config, metadata = load_model(path)
    assert config == CFG and metadata == META
    assert not loaded.training
    assert not any(parametrize.is_parametrized(m) for m in loaded.modules())
    x = torch.rand(2, 1, 24, 16)
    g.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), g(x))
    # the generator that was saved is unchanged and still trains with spectral norm
    assert any(parametrize.is_parametrized(m) for m in g.modules())
    g.train()
    g(x).mean().backward()


def test_save_is_atomic_and_overwrites(saved, tmp_path):
    g, path = saved
    save_model(path, g, CFG, {"scale": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left
    assert load_model(path)[2] == {"scale": 2}


def test_save_refuses_a_config_that_is_not_the_generators(tmp_path):
    with pytest.raises(ValueError, match="features=8"):
        save_model(tmp_path / "m.safetensors", Generator(CFG), GeneratorConfig(), {})


def test_model_info_reads_metadata_only(saved):
    _, path = saved
    info = model_info(path)
    assert info["config"] == {"channels": 1, "features": 8, "growth": 4, "layers": 2, "blocks": 2, "scale_input": False, "coarse_kept": False}
    assert info["scale"] == 4 and info["format_version"] == "1"
    assert info["info"] == {k: v for k, v in META.items() if k != "scale"}
    assert info["parameters"] == count_parameters(Generator(CFG, spectral_norm=False))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="nope.safetensors does not exist"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match="does not exist"):
        model_info(tmp_path / "nope.safetensors")




@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_pickle_is_refused_and_never_unpickled(tmp_path, how):
    path = code_pickle(tmp_path / "model.safetensors", "head.weight", how)
    for load in (load_model, model_info):
        with pytest.raises(ModelFileError, match="not a readable safetensors model file.*never pickles"):
            load(path)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("keep", [0.5, 0.999, 10])
def test_a_truncated_file_is_refused(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(ModelFileError, match="not a readable safetensors model file"):
        load_model(path)


def test_a_tampered_header_is_refused(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    i = data.index(b'"format"')
    data[i : i + 2] = b"{{"  # the JSON header no longer parses
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="m.safetensors is not a readable safetensors model file.*invalid JSON"):
        load_model(path)


def _rewrite(path, **metadata_changes):
    """Rewrite a model file's metadata (None removes an entry), keeping its tensors."""
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    metadata.update(metadata_changes)
    save_file(load_file(str(path)), str(path), metadata={k: v for k, v in metadata.items() if v is not None})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "other-tool"}, "not a ficli model"),
        ({"format": None}, "not a ficli model"),
        ({"format_version": "2"}, "format version '2'"),
        ({"config": "{not json"}, "damaged metadata"),
        ({"config": json.dumps({"features": 8, "heads": 2})}, "damaged metadata"),
        ({"scale": "four"}, "damaged metadata"),
    ],
)
def test_unknown_format_or_damaged_metadata_is_refused(saved, changes, message):
    _, path = saved
    _rewrite(path, **changes)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_safetensors_file_without_metadata_is_refused(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="not a ficli model"):
        load_model(tmp_path / "plain.safetensors")


def test_tensors_of_another_architecture_are_refused(tmp_path):
    small = GeneratorConfig(features=4, growth=4, layers=2, blocks=2)
    path = save_model(tmp_path / "m.safetensors", _trained_like(small), small, META)
    _rewrite(path, config=json.dumps(CFG.__dict__))  # features=4 tensors under a features=8 config
    with pytest.raises(ModelFileError, match="do not match the architecture.*wrong shape head.weight"):
        load_model(path)
    _rewrite(path, config=json.dumps({**small.__dict__, "blocks": 3}))
    with pytest.raises(ModelFileError, match="missing blocks.2"):
        load_model(path)
    _rewrite(path, config=json.dumps({**small.__dict__, "blocks": 1}))
    with pytest.raises(ModelFileError, match="unexpected blocks.1"):
        load_model(path)
