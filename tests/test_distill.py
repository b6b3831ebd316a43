import pytest
import torch

from gclib import stages
from gclib.data import load_task
from gclib.families.resnet import RESNET, MobileResnetGenerator, ResnetGenerator
from gclib.nn.gan import NLayerDiscriminator, init_weights
from gclib.presets import get_preset
from gclib.recipes.distill import (DistillTrainer, FeatureTaps, TeacherCache, build_mappings, distill_config,
                                   distill_loss, init_mappings_as_selection)
from gclib.recipes.trainer import TrainConfig, sample_batch

CFG = get_preset("smoke", {"data.n_train": 8, "data.n_heldout": 4, "data.n_test": 4})


@pytest.mark.parametrize("net, width", [(ResnetGenerator(ngf=16, n_blocks=9), 64),
                                        (MobileResnetGenerator("8_8_8_8_8_8_8_8", 9), 32),
                                        (MobileResnetGenerator("8_8_16_8_8_8_8_8"), 64)])
def test_taps_return_the_trunk_features_at_the_four_points(net, width):
    x = torch.randn(2, 3, 32, 32)
    with FeatureTaps(net, RESNET.distill_points(net)) as taps:
        out = net(x)
    assert out.shape == x.shape
    assert [tuple(f.shape) for f in taps.features] == [(2, width, 8, 8)] * 4
    # the taps are the outputs of layers 9, 12, 15, 18: re-running the prefix gives the same tensor
    assert torch.allclose(taps.features[-1], net.model[:19](x.clamp(-1, 1)))


def test_mappings_map_student_width_to_teacher_width():
    t, s = ResnetGenerator(ngf=16, n_blocks=9), MobileResnetGenerator("8_8_8_8_8_8_8_8", 9)
    maps = build_mappings(RESNET, s, t)
    feats_s = [torch.randn(2, 32, 8, 8) for _ in range(4)]
    feats_t = [torch.randn(2, 64, 8, 8) for _ in range(4)]
    assert distill_loss(feats_s, feats_t, maps) > 0
    assert all(m.weight.shape == (64, 32, 1, 1) for m in maps)


def test_variants_follow_the_paper():
    base = TrainConfig(steps=1)
    paired = distill_config(base, True, "features")
    assert (paired.gan_mode, paired.lambda_recon, paired.lambda_distill, paired.recon_target,
            paired.conditional_d) == ("hinge", 100.0, 1.0, "real", True)
    unpaired = distill_config(base, False, "features")
    assert (unpaired.gan_mode, unpaired.lambda_recon, unpaired.lambda_distill, unpaired.recon_target,
            unpaired.conditional_d) == ("lsgan", 10.0, 0.01, "teacher", False)
    assert distill_config(base, True, "output").recon_target == "teacher"
    assert distill_config(base, True, "alone").lambda_distill == 0
    with pytest.raises(ValueError, match="features"):
        distill_config(base, True, "everything")


def _trainer(tmp_path, paired, variant, steps=3, lr=2e-4):
    torch.manual_seed(0)
    teacher = ResnetGenerator(ngf=8, n_blocks=3)
    student = init_weights(MobileResnetGenerator("4_4_4_4_4_4_4_4", 3))
    nets = {"G": student, "D": init_weights(NLayerDiscriminator(6 if paired else 3, 8)),
            "maps": build_mappings(RESNET, student, teacher)}
    cfg = distill_config(TrainConfig(steps=steps, batch_size=2, lr=lr, ckpt_every=100), paired, variant)
    return DistillTrainer(nets, teacher, cfg, tmp_path / "s.pt")


def test_mapping_convs_are_trained(tmp_path):
    tr = _trainer(tmp_path, True, "features")
    before = [m.weight.clone() for m in tr.nets["maps"]]
    tr.fit(load_task("facades", CFG).train, progress=False)
    assert all(not torch.equal(b, m.weight) for b, m in zip(before, tr.nets["maps"]))
    assert all(h["distill"] > 0 for h in tr.history)


def test_unpaired_recon_target_is_the_teachers_output(tmp_path):
    data = load_task("stripes", CFG).train
    tr = _trainer(tmp_path, False, "features", steps=1, lr=0.0)
    tr.fit(data, progress=False)
    batch = sample_batch(data, 0, tr.cfg)
    with torch.no_grad():
        to_teacher = torch.nn.functional.l1_loss(tr.nets["G"](batch["A"]), tr.teacher(batch["A"])).item()
        to_b = torch.nn.functional.l1_loss(tr.nets["G"](batch["A"]), batch["B"]).item()
    assert tr.history[0]["G_recon"] == pytest.approx(to_teacher, rel=1e-5)
    assert to_b != pytest.approx(to_teacher, rel=1e-3)


def test_teacher_is_not_trained(tmp_path):
    tr = _trainer(tmp_path, True, "features")
    before = {k: v.clone() for k, v in tr.teacher.state_dict().items()}
    tr.fit(load_task("facades", CFG).train, progress=False)
    assert all(torch.equal(before[k], v) for k, v in tr.teacher.state_dict().items())
    assert "teacher" not in tr.state_dict()["nets"]


def test_teacher_cache_gives_what_the_teacher_computes(tmp_path):
    data = load_task("facades", CFG).train
    teacher = ResnetGenerator(ngf=8, n_blocks=3)
    cache = TeacherCache(teacher, RESNET.distill_points(teacher), data.A, batch_size=3, progress=False)
    batch = sample_batch(data, 1, TrainConfig(steps=4, batch_size=4))
    out, feats = cache.lookup(batch["index"], batch["flip_a"], "cpu")
    with torch.no_grad(), FeatureTaps(teacher, RESNET.distill_points(teacher)) as taps:
        expected = teacher(batch["A"])   # batch["A"] is already flipped where flip_a says so
    assert torch.allclose(out, expected, atol=1e-5)
    assert all(torch.allclose(f, t, atol=1e-2, rtol=1e-2) for f, t in zip(feats, taps.features))  # float16 store


def test_training_with_the_cache_matches_training_without(tmp_path):
    data = load_task("facades", CFG).train
    plain = _trainer(tmp_path / "a", True, "features").fit(data, progress=False)
    cached = _trainer(tmp_path / "b", True, "features")
    cached.cache = TeacherCache.for_split(RESNET, cached.teacher, data, progress=False)
    assert cached.cache is not None
    assert TeacherCache.for_split(RESNET, cached.teacher, data, progress=False, max_bytes=1000) is None  # too big
    cached.fit(data, progress=False)
    for h1, h2 in zip(plain.history, cached.history):
        assert h1["G_recon"] == pytest.approx(h2["G_recon"], rel=1e-4)
        assert h1["distill"] == pytest.approx(h2["distill"], rel=1e-2)


def test_teacher_init_copies_the_strongest_channels_of_the_shared_layers():
    torch.manual_seed(0)
    teacher = init_weights(ResnetGenerator(ngf=16, n_blocks=3))
    student = init_weights(MobileResnetGenerator("8_8_8_8_8_8_8_8", 3))
    trunk = RESNET.init_from_teacher(student, teacher)[0]
    stem_t, stem_s = teacher.model[1].weight, student.model[1].weight        # (16, 3, 7, 7), (8, 3, 7, 7)
    norms = stem_t.abs().sum((1, 2, 3))
    kept = [int(torch.nonzero((stem_t == w).all(dim=(1, 2, 3)))[0]) for w in stem_s]
    assert len(set(kept)) == 8 and kept == sorted(kept)                       # distinct, in the teacher's order
    dropped = [c for c in range(16) if c not in kept]
    assert norms[kept].min() >= norms[dropped].max()                           # the largest L1 norms were kept
    assert len(trunk) == 32 and trunk.max() < 64                               # trunk: 4*8 of the teacher's 4*16
    assert torch.equal(student.model[-2].bias, teacher.model[-2].bias)         # the RGB output layer keeps all 3


def test_selection_mappings_start_at_the_teachers_copied_features():
    torch.manual_seed(0)
    teacher = init_weights(ResnetGenerator(ngf=16, n_blocks=3))
    student = init_weights(MobileResnetGenerator("8_8_8_8_8_8_8_8", 3))
    maps = build_mappings(RESNET, student, teacher)
    selections = RESNET.init_from_teacher(student, teacher)
    init_mappings_as_selection(maps, selections)
    trunk = selections[0]
    x = torch.randn(2, 3, 32, 32)
    stem_s, stem_t = student.model[:4](x), teacher.model[:4](x)         # the stem's kept channels compute the same
    kept = [c for c in range(16) if any(torch.allclose(stem_t[:, c], stem_s[:, j]) for j in range(8))]
    assert len(kept) == 8
    with FeatureTaps(teacher, RESNET.distill_points(teacher)) as t, FeatureTaps(student, RESNET.distill_points(student)) as s:
        teacher(x), student(x)
    mapped = maps[0](s.features[0])                                     # (2, 64, 8, 8)
    assert torch.equal(mapped[:, trunk], s.features[0])                 # student channel j -> teacher channel trunk[j]
    others = torch.ones(64, dtype=torch.bool)
    others[trunk] = False
    assert mapped[:, others].abs().max() == 0


@pytest.mark.parametrize("task", ["facades", "stripes"])
def test_students_load_or_train(tmp_path, task):
    from gclib.recipes.distill import VARIANTS
    cfg = get_preset("smoke", {"data.n_train": 8, "data.n_heldout": 4, "data.n_test": 4, "teacher.steps": 2,
                               "student.steps": 2, "teacher.n_blocks": 3, "student.ngf": 4, "teacher.ngf": 8,
                               "teacher.ndf": 8, "supernet.choices": (4,), "supernet.unpaired_choices": (4,),
                               "search.budget_widths": (4,)})
    data = load_task(task, cfg)
    teacher = stages.teacher(cfg, data, tmp_path, progress=False)
    for variant in VARIANTS:
        G, art = stages.student(cfg, data, teacher, variant, tmp_path, progress=False)
        assert art.trained_now and len(art.history) == 2 and f"_{variant}_" in art.path.name
        # without a teacher, an unpaired student learns with CycleGAN (cycle loss); with one, from its outputs
        assert ("cycle" in art.history[0]) == (not data.paired and variant in ("alone", "init"))
        again, art2 = stages.student(cfg, data, teacher, variant, tmp_path, progress=False)
        assert not art2.trained_now and art2.path == art.path
        assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), again.state_dict().values()))
    _, art3 = stages.student(cfg.override({"student.steps": 3}), data, teacher, "features", tmp_path,
                             progress=False)
    assert art3.trained_now and len(art3.history) == 3 and art3.path != art.path   # other settings, another file


def test_distillation_steps_d_and_g_together_after_both_losses(tmp_path):
    """The official order: G's adversarial loss is computed with the D of before the step (not the updated one)."""
    tr = _trainer(tmp_path, True, "features", steps=1)
    D_before = {k: v.clone() for k, v in tr.nets["D"].state_dict().items()}
    seen = []
    original = tr.nets["D"].forward

    def spy(x):
        seen.append({k: v.clone() for k, v in tr.nets["D"].state_dict().items()})
        return original(x)
    tr.nets["D"].forward = spy
    tr.fit(load_task("facades", CFG).train, progress=False)
    assert len(seen) == 3                                             # D(fake), D(real), then D(fake) for G
    assert all(torch.equal(seen[2][k], D_before[k]) for k in D_before)      # G saw the old D
    assert any(not torch.equal(tr.nets["D"].state_dict()[k], D_before[k]) for k in D_before)  # D did step
