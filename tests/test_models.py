import pytest
import torch

from gclib.metrics import count_macs, count_params
from gclib.mobile import MobileResnetGenerator, parse_config
from gclib.models import GANLoss, NLayerDiscriminator, ResnetGenerator


def test_teacher_cost_matches_the_paper():
    g = ResnetGenerator(ngf=64, n_blocks=9)
    assert round(count_macs(g, 256) / 1e9, 2) == 56.80
    assert round(count_params(g) / 1e6, 2) == 11.38


@pytest.mark.parametrize("config, gmacs, mparams", [
    ("64_64_64_64_64_64_64_64", 18.31, 1.99),
    ("32_32_32_32_32_32_32_32", 4.93, 0.51),
    ("16_16_16_16_16_16_16_16", 1.41, 0.14),
    ("16_16_24_16_32_64_16_24", 2.62, 0.36),
    ("24_24_40_56_24_56_16_40", 4.83, 0.70),
])
def test_mobile_configs_match_guide_table(config, gmacs, mparams):
    g = MobileResnetGenerator(config=config)
    assert round(count_macs(g, 256) / 1e9, 2) == gmacs
    assert round(count_params(g) / 1e6, 2) == mparams


def test_mobile_is_cheaper_than_teacher_at_every_resolution():
    for size in (32, 64):
        assert count_macs(MobileResnetGenerator(ngf=64), size) < count_macs(ResnetGenerator(ngf=64), size)


def test_teacher_keys_follow_the_official_layout():
    """Official pix2pix/CycleGAN checkpoints name conv weights model.1, model.4, model.7, model.1x.conv_block.{1,5},
    model.19, model.22 (transposed) and model.26."""
    keys = set(ResnetGenerator().state_dict())
    expected = {"model.1.weight", "model.4.weight", "model.7.weight", "model.19.weight", "model.22.weight",
                "model.26.weight"}
    expected |= {f"model.{i}.conv_block.{j}.weight" for i in range(10, 19) for j in (1, 5)}
    assert expected <= keys
    assert len(keys) == 2 * (3 + 18 + 2 + 1)  # weight + bias of every conv, no norm parameters


def test_official_state_dict_loads_strictly():
    # A state dict built by key name only (as an official checkpoint would be) loads without missing/unexpected keys.
    src = ResnetGenerator()
    fresh = {k: torch.randn_like(v) for k, v in src.state_dict().items()}
    dst = ResnetGenerator()
    dst.load_state_dict(fresh, strict=True)
    assert torch.equal(dst.model[26].weight, fresh["model.26.weight"])


def test_distillation_points_are_the_trunk_features():
    g = ResnetGenerator(ngf=16, n_blocks=9)
    assert g.distill_indices == [9, 12, 15, 18]
    x = torch.randn(2, 3, 32, 32)
    feats, h = {}, x
    for i, layer in enumerate(g.model):
        h = layer(h)
        feats[i] = h
    for i in g.distill_indices:
        assert feats[i].shape == (2, 64, 8, 8)  # 4*ngf channels at 1/4 resolution
    assert feats[len(g.model) - 1].shape == x.shape


def test_patchgan_sees_70x70_patches():
    d = NLayerDiscriminator(6, 64, n_layers=3)
    out = d(torch.randn(1, 6, 256, 256))
    assert out.shape == (1, 1, 30, 30)
    # receptive field of 70: one output logit depends on exactly a 70x70 input window. Instance norms couple all
    # pixels through their statistics, so measure the receptive field of the convolutions with the norms removed.
    for i, layer in enumerate(d.model):
        if isinstance(layer, torch.nn.InstanceNorm2d):
            d.model[i] = torch.nn.Identity()
    x = torch.randn(1, 6, 140, 140, requires_grad=True)
    d(x)[0, 0, 5, 5].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    assert rows.max() - rows.min() + 1 == 70


def test_gan_losses():
    logits = torch.tensor([2.0, -1.0])
    assert GANLoss("lsgan")(torch.ones(3), True) == 0
    assert GANLoss("hinge")(logits, True, for_discriminator=False) == -logits.mean()
    assert GANLoss("hinge")(logits, True) == torch.relu(1 - logits).mean()
    assert GANLoss("hinge")(logits, False) == torch.relu(1 + logits).mean()
    v = GANLoss("vanilla")(torch.zeros(4), True)
    assert torch.isclose(v, torch.log(torch.tensor(2.0)))
    with pytest.raises(ValueError, match="lsgan"):
        GANLoss("wgan")


@pytest.mark.parametrize("bad, message", [
    ("16_16", "needs 8"),
    ("16_16_16_16_16_16_16_x", "8 integers"),
    ("16_16_16_16_16_16_16_20", r"c7=20 not in the allowed widths \[16, 24, 32, 48, 64\]"),
])
def test_invalid_config_says_what_is_allowed(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_config(bad, choices=(64, 48, 32, 24, 16))
