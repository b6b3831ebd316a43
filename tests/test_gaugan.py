"""GauGAN's recipe (notebook 06): label-map inputs, spectral norm folded at save, TTUR, the perceptual loss, and the
stages training a SPADE teacher, supernet and sub-network end to end at a tiny size."""
import pytest
import torch

from gclib import stages
from gclib.artifacts import load_artifact
from gclib.data import label_map_task, load_task, one_hot
from gclib.families import get_family
from gclib.presets import get_preset
from gclib.recipes import recipe_for
from gclib.recipes.gaugan import (GauGANTrainer, PerceptualLoss, gaugan_config, teacher_nets, plain_state_dict,
                                  with_spectral_norm)

SPADE = get_family("spade")
TINY = {"family": "spade", "data.n_train": 8, "data.n_heldout": 4, "data.n_test": 4, "teacher.steps": 4,
        "supernet.steps": 4, "eval_every": 2, "ckpt_every": 2}


@pytest.fixture(scope="module")
def tiny():
    cfg = get_preset("smoke", TINY, task="facades")
    colour = load_task("facades", cfg)
    return cfg, colour, label_map_task(colour, SPADE.arch(cfg)["label_nc"])


def test_switching_the_family_applies_its_preset_changes_before_the_users():
    base = get_preset("laptop", task="facades")
    spade = get_preset("laptop", {"family": "spade", "teacher.steps": 7}, task="facades")
    assert base.family == "resnet" and base.teacher.ngf == 64
    assert spade.family == "spade" and spade.teacher.ngf == 16 and spade.teacher.steps == 7
    assert SPADE.arch(spade) == {"label_nc": 8, "n_up": 3}            # 8 facade classes; 32x32 keeps a 4x4 grid
    assert SPADE.arch(get_preset("gpu", {"family": "spade"}))["n_up"] == 5


def test_label_maps_become_one_hot_inputs(tiny):
    cfg, colour, data = tiny
    a = data.train.A
    assert a.shape == (len(colour.train.A), 8, 32, 32)
    assert torch.equal(a.sum(1), torch.ones_like(a[:, 0])) and torch.equal(a.argmax(1), colour.train.label_A)
    assert data.test.B is colour.test.B and torch.equal(data.test.label_target, colour.test.label_target)
    with pytest.raises(ValueError, match="spade.label_nc"):
        one_hot(colour.train.label_A, 3)
    with pytest.raises(ValueError, match="no label maps"):
        label_map_task(load_task("stripes", cfg), 8)


def test_the_gaugan_recipe_refuses_unpaired_tasks_and_pixel_distillation():
    with pytest.raises(ValueError, match="needs a paired task"):
        recipe_for("spade", paired=False)
    with pytest.raises(ValueError, match="no variant 'output'"):
        gaugan_config(get_preset("smoke", {"family": "spade"}), 1, 0, "output")


def test_spectral_norm_is_folded_into_plain_weights_with_the_same_output():
    torch.manual_seed(0)
    G = with_spectral_norm(SPADE.teacher(8, label_nc=5, n_up=3))
    x = SPADE.example_inputs(2, 32, label_nc=5)[0]
    G.train()
    for _ in range(3):                                    # power iterations settle u, v
        G(x)
    G.eval()
    plain = SPADE.teacher(8, label_nc=5, n_up=3).eval()
    plain.load_state_dict(plain_state_dict(G))             # strict: exactly the plain network's keys
    assert torch.allclose(plain(x), G(x), atol=1e-5)
    sigma = torch.linalg.matrix_norm(plain.head_0.conv_0.weight.flatten(1), ord=2)
    assert abs(float(sigma.detach()) - 1) < 0.1                    # the folded weight has spectral norm about 1


def test_ttur_trains_g_at_half_and_d_at_twice_the_schedule(tmp_path, tiny):
    cfg, _, data = tiny
    c = gaugan_config(cfg, 4, 0)
    trainer = GauGANTrainer(teacher_nets(SPADE, cfg), c, tmp_path / "t.pt")
    trainer.set_lr(1e-3)
    assert trainer.optimizers["G"].param_groups[0]["lr"] == 5e-4 and trainer.optimizers["D"].param_groups[0]["lr"] == 2e-3
    assert trainer.optimizers["G"].param_groups[0]["betas"] == (0.0, 0.9)


def test_perceptual_loss_is_zero_for_the_same_image_and_trains_only_the_fake():
    from gclib.metrics.features import OfflineFeatures
    loss = PerceptualLoss.offline(OfflineFeatures())
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_()
    assert float(loss(real, real)) == 0
    value = loss(fake, real)
    value.backward()
    assert float(value.detach()) > 0 and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.net.parameters())


def test_gaugan_resumes_with_nothing_lost(tmp_path, tiny):
    """Spectral norm's power-iteration vectors are part of the checkpoint: stopping and resuming is exact."""
    cfg, _, data = tiny
    c = gaugan_config(cfg, 4, 0)
    make = lambda path: GauGANTrainer(stages._seeded(0, lambda: teacher_nets(SPADE, cfg)), c, path)
    straight = make(tmp_path / "a.pt").fit(data.train, progress=False)
    make(tmp_path / "b.pt").fit(data.train, stop_at=2, progress=False)
    resumed = make(tmp_path / "b.pt").fit(data.train, progress=False)
    for name in ("G", "D"):
        a, b = straight.nets[name].state_dict(), resumed.nets[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_stages_train_a_spade_teacher_supernet_and_subnetwork(tmp_path, tiny):
    cfg, _, data = tiny
    teacher = stages.teacher(cfg, data, tmp_path, progress=False)
    assert teacher.artifact.path.name.startswith("teacher_facades_spade_s0_")   # the family names its files
    stored = load_artifact(teacher.artifact.path)
    assert not any("parametrizations" in k for k in stored["weights"]["G"])   # saved without spectral norm
    assert stored["stage"]["settings"]["label_nc"] == 8 and stored["stage"]["settings"]["n_up"] == 3
    sup = stages.supernet(cfg, data, teacher, tmp_path, progress=False)
    assert {"G_gan", "G_feat", "G_perceptual", "distill", "D"} <= set(sup.artifact.history[-1])
    config = SPADE.space(cfg.supernet.choices).smallest()
    tuned = stages.subnet(cfg, data, teacher, config, tmp_path, steps=2, start="supernet", supernet=sup,
                          progress=False)
    assert tuned.net.config == config and tuned.net(data.test.A[:2]).shape == (2, 3, 32, 32)
    again = stages.teacher(cfg, data, tmp_path, progress=False)           # loaded, not retrained
    assert not again.artifact.trained_now


def test_vgg19_weights_are_checked_read_safely_and_keyed(tmp_path):
    """GauGAN's VGG perceptual loss from a file the user supplies: its digest must be the official file's, it is read
    with weights_only=True (a crafted pickle is refused without running), and the stage key names VGG19."""
    from gclib.data import DatasetError
    from gclib.metrics.features import VGG19Features, vgg19_features
    torch.manual_seed(0)
    reference = VGG19Features()
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in reference.features.state_dict().items()}, path)
    with pytest.raises(DatasetError, match="not the official VGG19 weights"):
        vgg19_features(path)
    net = vgg19_features(path, sha256=None)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    maps = net.feature_maps(x)
    assert [m.shape[1] for m in maps] == [64, 128, 256, 512, 512]
    assert all(torch.equal(a, b) for a, b in zip(maps, reference.feature_maps(x)))
    marker = tmp_path / "code_ran"

    class RunsCode:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)
    torch.save({"features.0.weight": RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(DatasetError, match="not a plain file of weights"):
        vgg19_features(tmp_path / "evil.pth", sha256=None)
    assert not marker.exists()
    cfg = get_preset("smoke", {"family": "spade", "spade.vgg_weights": str(path)})
    c = gaugan_config(cfg, 1, 0)
    assert c.perceptual_net == "vgg19-dcbb9e9d" and "perceptual_weights" not in c.settings()
    assert gaugan_config(get_preset("smoke", {"family": "spade"}), 1, 0).perceptual_net.startswith("offline")
