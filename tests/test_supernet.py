import pytest
import torch

from gclib import stages
from gclib.data import load_task
from gclib.families.resnet import FAST_CYCLEGAN_CHOICES, RESNET, MobileResnetGenerator, SuperMobileResnetGenerator
from gclib.metrics import count_macs
from gclib.nn.gan import NLayerDiscriminator, init_weights, narrow_discriminator
from gclib.presets import get_preset
from gclib.recipes.distill import distill_config
from gclib.recipes.once_for_all import SupernetTrainer, elastic_mappings
from gclib.recipes.trainer import TrainConfig, step_generator


def test_full_width_supernet_is_the_mobile_generator():
    torch.manual_seed(0)
    sup = init_weights(SuperMobileResnetGenerator(16, n_blocks=3)).eval()
    plain = MobileResnetGenerator("16_16_16_16_16_16_16_16", 3).eval()
    plain.load_state_dict(sup.state_dict())                       # same names and shapes
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sup(x), plain(x), atol=1e-6)


def test_supernet_at_paper_widths_extracts_the_released_configs():
    sub = RESNET.extract(SuperMobileResnetGenerator(64), "16_16_24_16_32_64_16_24")
    assert count_macs(sub, 256) / 1e9 == pytest.approx(2.62, abs=0.01)     # Fast horse2zebra


def test_weights_are_shared_first_k():
    sup = SuperMobileResnetGenerator(16, n_blocks=3)
    sub = RESNET.extract(sup, "8_8_8_8_8_8_8_8")
    assert torch.equal(sub.model[1].weight, sup.model[1].weight[:8])
    assert torch.equal(sub.model[4].weight, sup.model[4].weight[:16, :8])       # down1: 2*8 out of 2*16, 8 in


def test_too_wide_config_says_the_limit():
    with pytest.raises(ValueError, match="at most 16"):
        SuperMobileResnetGenerator(16, n_blocks=3).set_config("32_16_16_16_16_16_16_16")


def _ofa_trainer(tmp_path, steps=2, seed=0, sampler="uniform"):
    torch.manual_seed(0)
    teacher = RESNET.teacher(8, 3)
    sup = init_weights(SuperMobileResnetGenerator(8, n_blocks=3))
    nets = {"G": sup, "D": init_weights(NLayerDiscriminator(6, 8)), "maps": elastic_mappings(RESNET, sup, teacher)}
    cfg = distill_config(TrainConfig(steps=steps, batch_size=2, ckpt_every=100, seed=seed), True, "features")
    return SupernetTrainer(nets, teacher, cfg, tmp_path / "ofa.pt", space=RESNET.space((4, 8)), sampler=sampler)


def test_once_for_all_step_trains_only_the_sampled_slices(tmp_path):
    space = RESNET.space((4, 8))
    # a seed whose first step samples a narrow stem, so some of the stem's filters go unused
    seed = next(s for s in range(100) if space.sample(step_generator(s, 0)).startswith("4_"))
    trainer = _ofa_trainer(tmp_path, steps=1, seed=seed)
    data = load_task("facades", get_preset("smoke")).train
    config = space.sample(step_generator(seed, 0))                    # what step 0 will sample
    stem_before = trainer.nets["G"].model[1].weight.detach().clone()
    trainer.fit(data, progress=False)
    assert trainer.nets["G"].config == config
    stem_after = trainer.nets["G"].model[1].weight.detach()
    assert not torch.equal(stem_after[:4], stem_before[:4])         # the sampled filters learned
    assert torch.equal(stem_after[4:], stem_before[4:])             # the others were not used, so not touched


def test_sampling_is_uniform_and_reproducible():
    space = RESNET.space(FAST_CYCLEGAN_CHOICES)
    configs = [space.sample(step_generator(0, t)) for t in range(400)]
    assert configs == [space.sample(step_generator(0, t)) for t in range(400)]
    first = [int(c.split("_")[0]) for c in configs]
    assert set(first) == set(FAST_CYCLEGAN_CHOICES)
    assert max(first.count(v) for v in FAST_CYCLEGAN_CHOICES) < 2 * 400 / len(FAST_CYCLEGAN_CHOICES)


def test_the_sandwich_sampler_trains_both_ends_every_four_steps(tmp_path):
    space = RESNET.space((4, 8))
    uniform, sandwich = _ofa_trainer(tmp_path), _ofa_trainer(tmp_path, sampler="sandwich")
    drawn = [uniform.config_at(t, step_generator(0, t)) for t in range(8)]
    picked = [sandwich.config_at(t, step_generator(0, t)) for t in range(8)]
    assert drawn == [space.sample(step_generator(0, t)) for t in range(8)]
    assert picked[0::4] == [space.largest()] * 2 and picked[1::4] == [space.smallest()] * 2
    assert picked[2::4] == drawn[2::4] and picked[3::4] == drawn[3::4]     # the rest: the same draws as uniform
    with pytest.raises(ValueError, match="choose one of"):
        _ofa_trainer(tmp_path, sampler="greedy")
    with pytest.raises(ValueError, match="supernet.sampler"):
        get_preset("smoke", {"supernet.sampler": "greedy"})


# ----------------------------------------------------------------------------------------------------------------
# The supernet and sub-network stages, paired and unpaired
# ----------------------------------------------------------------------------------------------------------------
TINY = {"data.n_train": 8, "data.n_heldout": 4, "data.n_test": 4, "teacher.steps": 2, "teacher.n_blocks": 3,
        "teacher.ngf": 8, "teacher.ndf": 8, "supernet.choices": (4, 6, 8), "supernet.unpaired_choices": (4, 8),
        "supernet.steps": 3, "eval_every": 3, "student.ngf": 4, "search.budget_widths": (4,)}


def _tiny(tmp_path, task="facades"):
    cfg = get_preset("smoke", TINY)
    data = load_task(task, cfg)
    return cfg, data, stages.teacher(cfg, data, tmp_path, progress=False)


def test_supernet_starts_from_the_teachers_strongest_channels_strongest_first(tmp_path):
    cfg, data, teacher = _tiny(tmp_path)
    sup, _ = stages.supernet(cfg.override({"supernet.steps": 0}), data, teacher, tmp_path, progress=False)
    t_stem = teacher.net.model[1].weight
    norms = t_stem.abs().sum((1, 2, 3))                            # the stem's filters, (ngf,)
    copied = sup.model[1].weight                                   # (max width, 3, 7, 7)
    order = torch.argsort(norms, descending=True)[:copied.shape[0]]
    assert torch.equal(copied, t_stem[order])                      # so the narrowest stem keeps the strongest filter


def test_a_supernet_wider_than_the_teacher_is_refused():
    with pytest.raises(ValueError, match=r"supernet.choices must be at most teacher.ngf \(8\)"):
        get_preset("smoke", {**TINY, "supernet.choices": (8, 16)})


@pytest.mark.parametrize("task", ["facades", "stripes"])
def test_supernet_and_subnets_load_or_train(tmp_path, task):
    cfg, data, teacher = _tiny(tmp_path, task)
    calls = []

    def eval_fn(G):
        calls.append(G.config)
        return {"fid": float(len(calls)), "kid": 0.0}

    sup, art = stages.supernet(cfg, data, teacher, tmp_path, eval_fn=eval_fn, progress=False)
    space = RESNET.space(cfg.supernet.choices_for(data.paired))
    assert art.trained_now and len(art.history) == 3 and art.stage["parent"] == teacher.artifact.key
    # largest and smallest at step 3, with the weight average (the smoke preset keeps one), then the raw weights
    assert calls == [space.largest(), space.smallest()] * 2
    scores = {"fid@largest", "kid@largest", "fid@smallest", "kid@smallest"}
    assert set(art.evals[0]) == {"step"} | scores | {f"raw_{k}" for k in scores}
    again = stages.supernet(cfg, data, teacher, tmp_path, progress=False)
    assert not again.artifact.trained_now
    assert all(torch.equal(a, b) for a, b in zip(sup.state_dict().values(), again.net.state_dict().values()))
    # changing the search or fine-tuning settings never retrains the supernet
    other = cfg.override({"search.population": 2, "search.finetune_steps": 1, "supernet.rank_configs": 1})
    assert not stages.supernet(other, data, teacher, tmp_path, progress=False).artifact.trained_now

    config = space.sample(torch.Generator().manual_seed(1))
    # zero fine-tuning steps: the sub-network is exactly the supernet's slice, mappings included
    G0, _ = stages.subnet(cfg, data, teacher, config, tmp_path / "ft0", 0, start="supernet", supernet=again,
                          progress=False)
    x = data.test.A[:2]
    with torch.no_grad():
        assert (G0(x) - again.net.set_config(config)(x)).abs().max() < 1e-5
    tuned, art3 = stages.subnet(cfg, data, teacher, config, tmp_path, 2, start="supernet", supernet=again,
                                progress=False)
    assert art3.trained_now and tuned.config == config and art3.stage["parent"] == art.key
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), G0.state_dict().values()))
    alone = stages.subnet(cfg, data, teacher, config, tmp_path, 2, start="teacher", progress=False)
    assert alone.artifact.trained_now and alone.artifact.stage["parent"] == teacher.artifact.key
    again3 = stages.subnet(cfg, data, teacher, config, tmp_path, 2, start="supernet", supernet=again, progress=False)
    assert not again3.artifact.trained_now                          # each start has its own file
    with pytest.raises(ValueError, match="start="):
        stages.subnet(cfg, data, teacher, config, tmp_path, 2, start="supernet", progress=False)


@pytest.mark.parametrize("task", ["facades", "stripes"])
def test_a_narrower_student_discriminator_in_every_distillation_stage(tmp_path, task):
    """student.ndf: every distillation stage trains against a D of that width, started from the teacher's
    strongest channels (fine-tuning: from the supernet's D); the paper's width keeps the artifacts' keys as they were."""
    cfg, data, teacher = _tiny(tmp_path, task)
    narrow_cfg = cfg.override({"student.ndf": 4})
    expected = narrow_discriminator(NLayerDiscriminator(6 if data.paired else 3, 4, norm=cfg.teacher.d_norm),
                                    stages.student_discriminator(cfg, data.paired, teacher.artifact.weights["D"]))
    stem = lambda art: art.weights["D"]["model.0.weight"]             # noqa: E731  (the D it ends with)
    wide = stages.student(cfg, data, teacher, "features", tmp_path, progress=False).artifact
    student = stages.student(narrow_cfg, data, teacher, "features", tmp_path, progress=False).artifact
    assert "d_width" not in wide.stage["settings"] and student.stage["settings"]["d_width"] == 4
    assert stem(wide).shape[0] == 8 and stem(student).shape[0] == 4 and student.path != wide.path
    untrained = narrow_cfg.override({"supernet.steps": 0})
    sup = stages.supernet(untrained, data, teacher, tmp_path, progress=False)
    assert all(torch.equal(sup.artifact.weights["D"][k], v) for k, v in expected.state_dict().items())
    config = RESNET.space(cfg.supernet.choices_for(data.paired)).smallest()
    alone = stages.subnet(narrow_cfg, data, teacher, config, tmp_path, 0, start="teacher", progress=False).artifact
    assert all(torch.equal(alone.weights["D"][k], v) for k, v in expected.state_dict().items())
    tuned = stages.subnet(untrained, data, teacher, config, tmp_path, 1, start="supernet", supernet=sup,
                          progress=False).artifact
    assert stem(tuned).shape[0] == 4 and tuned.stage["settings"]["d_width"] == 4
    if not data.paired:   # the unpaired controls train with CycleGAN, against discriminators that wide too
        cycle = stages.student(narrow_cfg, data, teacher, "alone", tmp_path, progress=False).artifact
        assert "cycle" in cycle.history[0] and stem(cycle).shape[0] == 4


def test_a_fresh_student_discriminator_in_every_distillation_stage(tmp_path):
    """student.teacher_d=False: the supernet, stand-alone sub-networks and students start from a fresh D, not the
    teacher's, and say so in their keys; the paper's start from the teacher's D keeps the artifacts' keys."""
    cfg, data, teacher = _tiny(tmp_path)
    fresh_cfg = cfg.override({"student.teacher_d": False, "supernet.steps": 0})
    teachers_d = teacher.artifact.weights["D"]
    same_as_teachers = lambda art: all(torch.equal(art.weights["D"][k], v) for k, v in teachers_d.items())  # noqa: E731
    paper = stages.supernet(cfg.override({"supernet.steps": 0}), data, teacher, tmp_path, progress=False).artifact
    fresh = stages.supernet(fresh_cfg, data, teacher, tmp_path, progress=False).artifact
    assert same_as_teachers(paper) and not same_as_teachers(fresh)
    assert "teacher_d" not in paper.stage["settings"] and fresh.stage["settings"]["teacher_d"] is False
    config = RESNET.space(cfg.supernet.choices_for(data.paired)).smallest()
    alone = stages.subnet(fresh_cfg, data, teacher, config, tmp_path, 0, start="teacher", progress=False).artifact
    assert not same_as_teachers(alone) and alone.stage["settings"]["teacher_d"] is False
    student = stages.student(fresh_cfg.override({"student.steps": 0}), data, teacher, "features", tmp_path,
                             progress=False).artifact
    assert not same_as_teachers(student) and student.stage["settings"]["teacher_d"] is False


def test_only_a_patchgan_is_narrowed():
    """GauGAN's multi-scale discriminator cannot start from a wider one: the error names the field and the fix."""
    cfg = get_preset("smoke", {"family": "spade"})
    wide = stages.student_discriminator(cfg, True).state_dict()       # the teacher-width D, fresh
    with pytest.raises(ValueError, match=r"student.ndf=8: only a PatchGAN.*set student.ndf to 0"):
        stages.student_discriminator(cfg.override({"student.ndf": 8}), True, wide)


def test_unpaired_supernet_distils_towards_the_teachers_output(tmp_path):
    cfg, data, teacher = _tiny(tmp_path, "stripes")
    _, art = stages.supernet(cfg, data, teacher, tmp_path, progress=False)
    train = art.stage["settings"]["train"]
    assert (train["recon_target"], train["gan_mode"], train["conditional_d"]) == ("teacher", "lsgan", False)
    assert art.stage["settings"]["choices"][0] == [4, 8]              # the unpaired choice set


def test_supernet_step_distils_through_sliced_mappings(tmp_path):
    """A once-for-all step with a narrow sampled trunk only uses (and trains) the first C_s input channels of
    each mapping conv."""
    trainer = _ofa_trainer(tmp_path, steps=1)
    trainer.space = RESNET.space((4,))                              # every width 4: trunk 16 of 32
    before = [m.weight.detach().clone() for m in trainer.nets["maps"]]
    trainer.fit(load_task("facades", get_preset("smoke")).train, progress=False)
    for m, w in zip(trainer.nets["maps"], before):
        assert not torch.equal(m.weight[:, :16], w[:, :16])
        assert torch.equal(m.weight[:, 16:], w[:, 16:])


def test_entry_choices_give_one_entry_its_own_widths_and_a_supernet_of_its_own(tmp_path):
    cfg = get_preset("smoke")
    fixed = cfg.override({"supernet.entry_choices": {"up2": [6]}})
    plain, space = cfg.supernet.space(RESNET, True), fixed.supernet.space(RESNET, True)
    assert space.choices[:7] == plain.choices[:7] and space.choices[7] == (6,) != plain.choices[7]
    assert {c.split("_")[-1] for c in (space.sample(torch.Generator().manual_seed(s)) for s in range(20))} == {"6"}
    with pytest.raises(ValueError, match=r"\['nope'\].*entries are \['stem'"):
        cfg.override({"supernet.entry_choices": {"nope": [6]}}).supernet.space(RESNET, True)
    with pytest.raises(ValueError, match="supernet.entry_choices"):
        cfg.override({"supernet.entry_choices": {"up2": [0]}})
    # the space is part of the supernet's key: the two never load each other's weights
    tiny, data, teacher = _tiny(tmp_path, "facades")
    one = stages.supernet(tiny, data, teacher, tmp_path, progress=False)
    two = stages.supernet(tiny.override({"supernet.entry_choices": {"up2": [6]}}), data, teacher, tmp_path,
                          progress=False)
    assert two.artifact.trained_now and one.artifact.key != two.artifact.key
    assert one.artifact.trained_now and two.artifact.stage["settings"]["choices"][7] == [6]
