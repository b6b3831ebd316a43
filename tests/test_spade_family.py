"""The SPADE (GauGAN) family beyond the shared contract: paper sizes, BatchNorm re-calibration, channel selection."""
import pytest
import torch

from gclib.families.spade import MobileSPADEGenerator, SPADEGenerator, recalibrate
from gclib.families.spade.family import SPADE_FAMILY as SPADE
from gclib.metrics import count_macs, count_params
from gclib.nn.gan import init_weights

ARCH = {"label_nc": 5, "n_up": 3}
RELEASED = "32_32_32_48_32_24_24_32"   # GAN Compression's released cityscapes GauGAN


def test_paper_sizes():
    """The paper's cityscapes GauGAN (36 label channels, the official 'more' schedule of six upsamplings): 281 G MACs
    and 93.0 M parameters, the released sub-network 31.3 G (README: 31.3; 31.21 counted) and 20.2 M; with the
    'normal' schedule of five, head_0 and G_middle_0 would work at four times the area (292.2 G)."""
    assert round(count_params(SPADEGenerator(64, label_nc=36, n_up=6)) / 1e6, 1) == 93.0
    assert round(count_params(MobileSPADEGenerator(RELEASED, label_nc=36, n_up=6)) / 1e6, 1) == 20.2
    teacher = SPADE.teacher_macs(64, "256x512", label_nc=36, n_up=6)
    released = SPADE.config_macs(RELEASED, (256, 512), label_nc=36, n_up=6)
    assert round(teacher / 1e9, 2) == 281.41 and round(released / 1e9, 2) == 31.21
    assert SPADE.teacher_macs(64, "256x512", label_nc=35, n_up=5) > teacher + 10e9
    assert round(SPADE.teacher_macs(64, 256, label_nc=184, n_up=5) / 1e9, 2) == 191.21   # COCO-Stuff, 'normal'


def test_more_upsamplings_closed_form_equals_torchprofile():
    """Six upsamplings (G_middle_1 upsampled too) counted by the closed form as torchprofile counts them."""
    arch = {"label_nc": 5, "n_up": 6}
    assert SPADE.teacher_macs(4, (64, 128), **arch) == count_macs(
        SPADE.teacher(4, **arch), inputs=SPADE.example_inputs(1, (64, 128), **arch))
    config = "4_4_4_6_4_4_4_4"
    assert SPADE.config_macs(config, (64, 128), **arch) == count_macs(
        SPADE.student(config, **arch), inputs=SPADE.example_inputs(1, (64, 128), **arch))


def test_teacher_closed_form_equals_torchprofile():
    for size in ((32, 32), (32, 64)):
        net = SPADE.teacher(8, **ARCH)
        assert SPADE.teacher_macs(8, size, **ARCH) == count_macs(
            net, inputs=SPADE.example_inputs(1, size, **ARCH)), size


def test_shortcut_blocks_whose_widths_happen_to_match_are_counted():
    """up_0 takes the 16 c0 stream to 8 c4: with c4 = 2 c0 in and out widths are equal, the learned shortcut stays."""
    config = "4_4_4_4_8_4_4_4"
    net = SPADE.student(config, **ARCH)
    assert net.up_0.conv_s.in_channels == net.up_0.conv_s.out_channels == 64
    assert SPADE.config_macs(config, 32, **ARCH) == count_macs(net, inputs=SPADE.example_inputs(1, 32, **ARCH))


def test_a_label_map_too_small_for_the_upsamplings_is_refused():
    with pytest.raises(ValueError, match="too small for 3 upsamplings"):
        SPADE.student("4_4_4_4_4_4_4_4", **ARCH)(SPADE.example_inputs(1, 4, **ARCH)[0])


def _supernet_and_maps(seed=0):
    torch.manual_seed(seed)
    sup = init_weights(SPADE.supernet(8, **ARCH))
    maps = [SPADE.example_inputs(2, 32, **ARCH)[0] for _ in range(2)]
    return sup, maps


def test_a_subnetwork_trains_only_its_own_batchnorm_statistics():
    sup, maps = _supernet_and_maps()
    norm = sup.head_0.norm_1.param_free_norm                      # normalises head_0's middle width: 16 c1
    before = norm.running_mean.clone()
    sup.set_config("8_4_8_8_8_8_8_8").train()
    sup(maps[0])
    changed = (norm.running_mean != before).nonzero().flatten()
    assert len(changed) > 0 and int(changed.max()) < 16 * 4


def test_recalibrated_supernet_slice_equals_recalibrated_extraction():
    sup, maps = _supernet_and_maps()
    config = "4_6_8_4_6_8_4_6"
    extracted = SPADE.extract(sup, config)
    recalibrate(sup.set_config(config), maps)
    recalibrate(extracted, maps)
    with torch.no_grad():
        x = maps[0][:2]
        assert (sup(x) - extracted(x)).abs().max() < 1e-4
        assert (SPADE.extract(sup, config).eval()(x) - extracted(x)).abs().max() < 1e-4   # statistics travel with the slice


def test_recalibration_matters_for_a_subnetwork():
    """Statistics gathered by the full network are wrong for a narrower one: outputs move when re-calibrated."""
    sup, maps = _supernet_and_maps()
    recalibrate(sup.set_config(SPADE.uniform(8)), maps)
    config = "4_4_4_4_4_4_4_4"
    with torch.no_grad():
        stale = SPADE.extract(sup, config).eval()(maps[0])
        fresh = recalibrate(SPADE.extract(sup, config), maps)(maps[0])
    assert (stale - fresh).abs().mean() > 1e-3


def test_channel_selection_copies_the_teacher_where_layers_are_shared():
    torch.manual_seed(0)
    teacher = init_weights(SPADE.teacher(4, **ARCH))
    with torch.no_grad():                                        # statistics to carry over
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
    same = SPADE.student(SPADE.uniform(4), **ARCH)               # the teacher's widths: everything is kept
    SPADE.init_from_teacher(same, teacher)
    for name, p in teacher.state_dict().items():
        if "mlp_gamma" not in name and "mlp_beta" not in name:    # dense in the teacher, separable in the student
            assert torch.equal(same.state_dict()[name], p), name
    narrow = SPADE.student("2_2_2_2_2_2_2_2", **ARCH)
    kept = SPADE.init_from_teacher(narrow, teacher, by_importance=True)
    norms = teacher.fc.weight.abs().sum((1, 2, 3))
    assert torch.equal(kept[0], torch.topk(norms, 32).indices)   # the stream keeps fc's strongest filters
    assert torch.equal(narrow.fc.weight, teacher.fc.weight[kept[0]])


def test_multiscale_discriminator_returns_every_stage_of_every_scale():
    from gclib.families.spade.discriminator import MultiscaleDiscriminator
    torch.manual_seed(0)
    D = MultiscaleDiscriminator(label_nc=5, ndf=8, n_layers=4, num_d=2)
    seg, image = SPADE.example_inputs(2, 32, **ARCH)[0], torch.rand(2, 3, 32, 32) * 2 - 1
    out = D(seg, image)
    assert len(out) == 2 and [len(o) for o in out] == [5, 5]
    assert out[0][-1].shape[1] == 1 and out[1][-1].shape[-1] < out[0][-1].shape[-1]   # the half-size scale
    for _ in range(20):                                       # power iteration: spectral norm settles at 1
        D(seg, image)
    conv = D.scales[0].stages[1][0]
    assert abs(torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item() - 1) < 0.05


def test_hinge_and_feature_matching_losses():
    from gclib.families.spade.discriminator import feature_matching_loss, hinge_d_loss, hinge_g_loss
    confident = [[torch.zeros(1, 4), torch.full((1, 1, 3, 3), 2.0)]]
    fooled = [[torch.zeros(1, 4), torch.full((1, 1, 3, 3), -2.0)]]
    assert hinge_d_loss(confident, fooled).item() == 0          # beyond the margins: nothing to learn
    unsure = [[torch.zeros(1, 4), torch.zeros(1, 1, 3, 3)]]
    assert hinge_d_loss(unsure, unsure).item() == 2
    assert hinge_g_loss(fooled).item() == 2 and hinge_g_loss(confident).item() == -2
    real = [[torch.ones(1, 4, requires_grad=True), torch.zeros(1, 1)]]
    fake = [[torch.full((1, 4), 3.0, requires_grad=True), torch.ones(1, 1)]]
    loss = feature_matching_loss(real, fake)
    loss.backward()
    assert loss.item() == 2 and real[0][0].grad is None and fake[0][0].grad is not None   # logits are not matched
