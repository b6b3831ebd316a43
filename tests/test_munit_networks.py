"""The MUNIT family's networks (issue: MUNIT compression): paper sizes, the style code's role, official names."""
import torch
from torch import nn

from gclib.families.munit.networks import config_widths, student, teacher
from gclib.metrics import count_macs, count_params

RELEASED = "16_16_16_24_56_16_40_40_32_24"   # Fast GAN Compression's released edges2shoes MUNIT


def _instance_norm_outputs(net: nn.Module, x: torch.Tensor) -> int:
    """Values written by InstanceNorms without parameters in one forward pass (today's torchprofile counts them 0)."""
    count = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: count.__setitem__(0, count[0] + o.numel()))
             for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return count[0]


def test_paper_sizes_at_edges2shoes_resolution():
    """Parameters are the paper's (15.0 M, 1.10 M). MACs (with the style encoder, 256x256): today's torchprofile
    counts 77.30 G and 2.610 G; the paper's 77.3 G and 2.63 G are these plus one per value an InstanceNorm writes
    (the profiler the paper used counted them): 77.31 G and 2.6295 G."""
    x = torch.randn(1, 3, 256, 256)
    big, small = teacher(64), student(RELEASED)
    assert round(count_params(big) / 1e6, 1) == 15.0 and round(count_params(small) / 1e6, 2) == 1.10
    today = count_macs(big, inputs=(x,)), count_macs(small, inputs=(x,))
    assert round(today[0] / 1e9, 2) == 77.30 and round(today[1] / 1e9, 2) == 2.61
    assert round((today[0] + _instance_norm_outputs(big, x)) / 1e9, 1) == 77.3
    assert round((today[1] + _instance_norm_outputs(small, x)) / 1e9, 2) == 2.63


def test_the_style_code_selects_the_output():
    torch.manual_seed(0)
    net = student("8_8_8_8_8_8_8_8_8_8").eval()
    x = torch.randn(2, 3, 32, 32)
    a, b = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        out_a, out_a2, out_b, own = net(x, a), net(x, a), net(x, b), net(x)
        content, style = net.encode(x)
        assert torch.equal(out_a, out_a2) and not torch.allclose(out_a, out_b)
        assert torch.allclose(own, net.decode(content, style))                # no style given: the image's own
    assert out_a.shape == (2, 3, 32, 32) and content.shape == (2, 32, 8, 8) and style.shape == (2, 8, 1, 1)


def test_config_widths_and_official_names():
    w = config_widths(RELEASED)
    assert (w["stem"], w["down_1"], w["down_2"]) == (16, 32, 96)
    assert w["content_res"] == [224, 224, 64, 64] and w["adain_res"] == [160, 160, 160, 160] and w["ups"] == (64, 24)
    names = set(student(RELEASED).state_dict())
    assert {"enc_style.model.0.conv.weight", "enc_content.model.3.model.0.model.0.conv.conv.0.weight",
            "dec.model.2.conv.conv.2.weight", "mlp.model.2.fc.weight"} <= names
    assert "enc_content.model.3.model.0.model.0.conv.weight" in set(teacher(8).state_dict())


def test_channel_selection_at_full_width_keeps_the_style_code():
    """At the teacher's widths, L1 selection only reorders channels (strongest first), and the style code's 8
    numbers keep their order: the student's style encoder reads the same style as the teacher's."""
    from gclib.families.munit.family import MUNIT_FAMILY
    torch.manual_seed(0)
    big = teacher(8).eval()
    small = student(MUNIT_FAMILY.uniform(8)).eval()
    (code,) = MUNIT_FAMILY.init_from_teacher(small, big, by_importance=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(small.enc_style(x), big.enc_style(x), atol=1e-5)
        assert sorted(code.tolist()) == list(range(32)) and code.tolist() != list(range(32))
        style = big.enc_style(x)
        ps, pt = small.mlp(style), big.mlp(style)          # per AdaIN: C shifts, then C scales (C = 32 here)
    # the first block's second AdaIN normalises the content code: its shifts are the teacher's of the kept channels
    assert torch.allclose(ps[:, 64:96], pt[:, 64 + code], atol=1e-6)
    assert torch.allclose(ps[:, :32], pt[:, :32], atol=1e-6)          # a middle: the first k, in order
