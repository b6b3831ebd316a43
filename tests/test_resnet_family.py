"""The ResNet family against the paper's numbers and the official code's layouts (the shared contract is checked for
every family in test_family_conformance.py)."""
import pytest
import torch

from gclib.families.resnet import (RESNET, MobileResnetGenerator, ResnetGenerator, SuperMobileResnetGenerator,
                                   describe_state_dict)
from gclib.metrics import count_macs, count_params
from gclib.nn.gan import GANLoss, NLayerDiscriminator, init_weights, narrow_discriminator


def test_teacher_cost_matches_the_paper():
    g = RESNET.teacher(64, 9)
    assert round(count_macs(g, 256) / 1e9, 2) == 56.80
    assert round(count_params(g) / 1e6, 2) == 11.38


@pytest.mark.parametrize("config, gmacs, mparams", [
    ("64_64_64_64_64_64_64_64", 18.31, 1.99),
    ("32_32_32_32_32_32_32_32", 4.93, 0.51),
    ("16_16_16_16_16_16_16_16", 1.41, 0.14),
    ("16_16_24_16_32_64_16_24", 2.62, 0.36),
    ("24_24_40_56_24_56_16_40", 4.83, 0.70),
])
def test_mobile_configs_match_the_papers_table(config, gmacs, mparams):
    g = RESNET.student(config)
    assert round(count_macs(g, 256) / 1e9, 2) == gmacs
    assert round(count_params(g) / 1e6, 2) == mparams
    assert round(RESNET.config_macs(config, 256) / 1e9, 2) == gmacs


def test_teacher_keys_follow_the_official_layout():
    """GAN Compression names the block convs conv_block.1 and conv_block.6 (a Dropout slot sits between)."""
    keys = set(ResnetGenerator().state_dict())
    expected = {"model.1.weight", "model.4.weight", "model.7.weight", "model.19.weight", "model.22.weight",
                "model.26.weight"}
    expected |= {f"model.{i}.conv_block.{j}.weight" for i in range(10, 19) for j in (1, 6)}
    assert expected <= keys
    assert len(keys) == 2 * (3 + 18 + 2 + 1)  # weight + bias of every conv, no norm parameters


def _in_layout(state: dict, second_conv: int) -> dict:
    """A state dict with every block's second conv renamed to ``conv_block.<second_conv>``, built by key name only,
    as an official checkpoint of that layout would be."""
    return {k.replace("conv_block.6.", f"conv_block.{second_conv}."): torch.randn_like(v) for k, v in state.items()}


@pytest.mark.parametrize("second_conv", [6, 5])  # GAN Compression (dropout slot) / pytorch-CycleGAN without dropout
@pytest.mark.parametrize("make", [lambda: ResnetGenerator(ngf=8, n_blocks=3),
                                  lambda: MobileResnetGenerator("8_8_8_8_8_8_8_8", 3),
                                  lambda: MobileResnetGenerator("8_4_8_4_8_4_4_8", 3),
                                  lambda: SuperMobileResnetGenerator(8, 3)],
                         ids=["teacher", "mobile", "compressed", "supernet"])
def test_official_checkpoints_of_both_layouts_load_strictly(make, second_conv):
    source = _in_layout(make().state_dict(), second_conv)
    assert any(f"conv_block.{second_conv}." in k for k in source)
    net = make()
    net.load_state_dict(dict(source), strict=True)
    for k, v in source.items():
        assert torch.equal(net.state_dict()[k.replace("conv_block.5.", "conv_block.6.")], v)


def test_a_state_dict_of_another_architecture_says_which():
    teacher_state = ResnetGenerator(ngf=8, n_blocks=3).state_dict()
    with pytest.raises(RuntimeError, match="dense teacher generator with stem width 8 and 3 residual blocks"):
        MobileResnetGenerator("8_8_8_8_8_8_8_8", 3).load_state_dict(teacher_state)
    with pytest.raises(RuntimeError, match="mobile .* stem width 16"):
        ResnetGenerator(ngf=8, n_blocks=3).load_state_dict(MobileResnetGenerator("16_8_8_8_8_8_8_8", 3).state_dict())
    assert "no ResNet-family generator" in describe_state_dict({"fc.weight": torch.zeros(1)})


@pytest.mark.parametrize("make", [lambda: ResnetGenerator(ngf=8, n_blocks=2),
                                  lambda: MobileResnetGenerator("8_8_8_8_8_8_8_8", 2)])
def test_generators_clamp_their_input_like_the_official_ones(make):
    g = init_weights(make()).eval()
    x = torch.randn(2, 3, 16, 16) * 3
    with torch.no_grad():
        assert torch.equal(g(x), g(x.clamp(-1, 1)))
        assert not torch.equal(g.model(x), g(x))                 # the clamp matters for such inputs


def test_channel_selection_keeps_the_output_colours_in_rgb_order():
    """Strongest-first selection must not permute the output conv's R, G, B rows, whatever their norms."""
    torch.manual_seed(0)
    teacher = init_weights(ResnetGenerator(ngf=16, n_blocks=3))
    t_out = teacher.model[-2]                                   # the 7x7 conv to RGB, weight (3, 16, 7, 7)
    with torch.no_grad():                                       # blue the strongest row, red the weakest
        t_out.weight[0] *= 0.1
        t_out.weight[2] *= 10
        t_out.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    for by_importance in (False, True):
        sup = init_weights(SuperMobileResnetGenerator(8, 3))
        RESNET.init_from_teacher(sup, teacher, by_importance=by_importance)
        s_out = sup.model[-2]                                   # (3, 8, 7, 7)
        assert torch.equal(s_out.bias, t_out.bias)
        # which teacher input channel each student input channel copies, read off the red row
        kept = [next(k for k in range(16) if torch.equal(s_out.weight[0, j], t_out.weight[0, k])) for j in range(8)]
        assert torch.equal(s_out.weight, t_out.weight[:, kept])  # every row c from teacher row c


def test_distillation_points_are_the_trunk_features():
    g = RESNET.teacher(16, 9)
    assert RESNET.distill_points(g) == ["model.9", "model.12", "model.15", "model.18"]
    assert RESNET.distill_widths(g) == [64] * 4
    from gclib.recipes.distill import FeatureTaps
    with FeatureTaps(g, RESNET.distill_points(g)) as taps:
        g(torch.randn(2, 3, 32, 32))
    assert [tuple(f.shape) for f in taps.features] == [(2, 64, 8, 8)] * 4  # 4*ngf channels at 1/4 resolution


def test_patchgan_sees_70x70_patches():
    d = NLayerDiscriminator(6, 64, n_layers=3)
    out = d(torch.randn(1, 6, 256, 256))
    assert out.shape == (1, 1, 30, 30)
    # The norms couple all pixels through their statistics: measure the convolutions' receptive field without them
    # (the "none" variant: same keys, an Identity in each norm's slot).
    plain = NLayerDiscriminator(6, 64, n_layers=3, norm="none")
    assert plain.state_dict().keys() == d.state_dict().keys()
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in plain.modules())
    plain.load_state_dict(d.state_dict())
    d = plain
    x = torch.randn(1, 6, 140, 140, requires_grad=True)
    d(x)[0, 0, 5, 5].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    assert rows.max() - rows.min() + 1 == 70


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_a_narrowed_patchgan_is_the_wide_one_with_its_weakest_channels_cut_off(norm):
    """narrow_discriminator keeps the strongest filters of each conv; every channel is normalised on its own, so the
    narrow D computes what the wide one computes once the dropped channels' outgoing weights are zeroed."""
    wide = init_weights(NLayerDiscriminator(6, 16, norm=norm))
    narrow = narrow_discriminator(NLayerDiscriminator(6, 8, norm=norm), wide)
    convs = [m for m in wide.model if isinstance(m, torch.nn.Conv2d)]
    stem_norms = convs[0].weight.abs().sum((1, 2, 3))
    kept = torch.sort(torch.topk(stem_norms, 8).indices).values
    assert torch.equal(narrow.model[0].weight, convs[0].weight[kept])       # the 8 strongest stem filters, in order
    cut = NLayerDiscriminator(6, 16, norm=norm)
    cut.load_state_dict(wide.state_dict())
    narrow_convs = [m for m in narrow.model if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        kept = torch.arange(6)                                            # the input channels, all kept
        for n, c in zip(narrow_convs, [m for m in cut.model if isinstance(m, torch.nn.Conv2d)]):
            dropped = torch.ones(c.in_channels, dtype=torch.bool)
            dropped[kept] = False
            c.weight[:, dropped] = 0                                      # what the dropped channels send on
            # which wide filter each narrow filter is (on the kept inputs)
            kept = torch.tensor([next(i for i in range(c.out_channels) if torch.equal(c.weight[i, kept], w))
                                 for w in n.weight])
            assert torch.equal(n.bias, c.bias[kept]) and torch.equal(kept, torch.sort(kept).values)
    x = torch.randn(2, 6, 32, 32)
    assert torch.allclose(narrow(x), cut(x), atol=1e-5)
    same = narrow_discriminator(NLayerDiscriminator(6, 16, norm=norm), wide)  # as wide: the same D
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), wide.state_dict().values()))
    with pytest.raises(ValueError, match="more than"):
        narrow_discriminator(NLayerDiscriminator(6, 32, norm=norm), wide)


def test_patchgan_norm_must_be_known():
    with pytest.raises(ValueError, match="'batch'.*'instance' or 'none'"):
        NLayerDiscriminator(3, 8, norm="batch")


def test_gan_losses():
    logits = torch.tensor([2.0, -1.0])
    assert GANLoss("lsgan")(torch.ones(3), True) == 0
    assert GANLoss("hinge")(logits, True, for_discriminator=False) == -logits.mean()
    assert GANLoss("hinge")(logits, True) == torch.relu(1 - logits).mean()
    assert GANLoss("hinge")(logits, False) == torch.relu(1 + logits).mean()
    assert torch.isclose(GANLoss("vanilla")(torch.zeros(4), True), torch.log(torch.tensor(2.0)))
    with pytest.raises(ValueError, match="lsgan"):
        GANLoss("wgan")


@pytest.mark.parametrize("bad, message", [
    ("16_16", "needs 8"),
    ("16_16_16_16_16_16_16_x", "8 integers"),
    ("16_16_16_16_16_16_16_20", r"entry up2 = 20 is not one of \[16, 24, 32, 48, 64\]"),
])
def test_invalid_config_says_what_is_allowed(bad, message):
    with pytest.raises(ValueError, match=message):
        RESNET.space().parse(bad)


def test_paper_choice_sets():
    assert RESNET.space().size == 390_625
    from gclib.families.resnet import FAST_PIX2PIX_CHOICES
    assert RESNET.space(FAST_PIX2PIX_CHOICES).size == 5_764_801


def test_a_checkpoint_that_does_not_fit_is_described_not_told_to_build_itself():
    from gclib.families.resnet import ResnetGenerator
    net = ResnetGenerator(ngf=8, n_blocks=2)
    other = ResnetGenerator(ngf=16, n_blocks=3).state_dict()
    with pytest.raises(RuntimeError, match="stem width 16 and 3 residual blocks. Build that architecture"):
        net.load_state_dict(other)
    without_a_bias = {k: v for k, v in net.state_dict().items() if k != "model.1.bias"}
    with pytest.raises(RuntimeError, match="has the shape of .* but not all of its tensors.*model.1.bias") as e:
        net.load_state_dict(without_a_bias)
    assert "Build that architecture" not in str(e.value)
