import os
import signal

import pytest
import torch

from gclib import stages
from gclib.artifacts import load_artifact
from gclib.data import load_task
from gclib.families import get_family
from gclib.families.resnet import ResnetGenerator
from gclib.nn.gan import NLayerDiscriminator, init_weights
from gclib.presets import get_preset
from gclib.recipes.teacher import CycleGANTrainer, Pix2PixTrainer
from gclib.recipes.trainer import TrainConfig, from_preset, lr_at, sample_batch

CFG = get_preset("smoke", {"data.n_train": 12, "data.n_heldout": 4, "data.n_test": 4})
TINY = {"data.n_train": 8, "data.n_heldout": 4, "data.n_test": 4, "teacher.steps": 2, "teacher.ngf": 8,
        "teacher.n_blocks": 3, "teacher.ndf": 8, "data.batch_size": 2, "supernet.choices": (4,),
        "supernet.unpaired_choices": (4,), "search.budget_widths": (4,), "student.ngf": 4}


def _nets(paired: bool, seed: int = 0):
    torch.manual_seed(seed)
    g = lambda: init_weights(ResnetGenerator(ngf=8, n_blocks=2))
    if paired:
        return {"G": g(), "D": init_weights(NLayerDiscriminator(6, 8))}
    return {"G_A": g(), "G_B": g(), "D_A": init_weights(NLayerDiscriminator(3, 8)),
            "D_B": init_weights(NLayerDiscriminator(3, 8))}


def _data(task):
    return load_task(task, CFG)


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k].state_dict()[p], b[k].state_dict()[p]) for k in a for p in a[k].state_dict())


def test_lr_is_constant_then_decays_linearly_to_zero():
    cfg = TrainConfig(steps=100, lr=1.0, decay_fraction=0.5)
    assert lr_at(0, cfg) == lr_at(50, cfg) == 1.0
    assert lr_at(75, cfg) == pytest.approx(0.5)
    assert lr_at(99, cfg) == pytest.approx(0.02)


def test_batches_are_epochs_and_paired_flips_match():
    data = _data("facades").train
    cfg = TrainConfig(steps=10, batch_size=4, seed=1)
    # 12 images, batch 4: steps 0-2 are one epoch and visit every image once
    batches = [sample_batch(data, s, cfg) for s in range(3)]
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(12))
    for b in batches:                                   # paired: B is A's own target, flipped alike
        expected_b = torch.where(b["flip_a"].view(-1, 1, 1, 1), data.B[b["index"]].flip(-1), data.B[b["index"]])
        assert torch.equal(b["B"], expected_b)
    assert torch.equal(batches[0]["A"], sample_batch(data, 0, cfg)["A"])


@pytest.mark.parametrize("trainer_cls, task", [(Pix2PixTrainer, "facades"), (CycleGANTrainer, "stripes")])
def test_interrupted_training_resumes_with_nothing_lost(tmp_path, trainer_cls, task):
    data = _data(task).train
    paired = trainer_cls is Pix2PixTrainer
    cfg = TrainConfig(steps=6, batch_size=2, ckpt_every=100, eval_every=3, pool_size=2,
                      gan_mode="hinge" if paired else "lsgan")

    straight = trainer_cls(_nets(paired), cfg, tmp_path / "a.pt").fit(data, progress=False)

    class CtrlCDuringStep3(trainer_cls):
        def train_step(self, batch, g):
            if len(self.history) == 2:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, arriving in the middle of the third step
            return super().train_step(batch, g)

    first = CtrlCDuringStep3(_nets(paired), cfg, tmp_path / "b.pt")
    with pytest.raises(KeyboardInterrupt, match="after step 3"):
        first.fit(data, progress=False)
    assert load_artifact(tmp_path / "b.pt")["step"] == 3
    # a fresh process: new networks with *other* initial weights, everything must come from the checkpoint
    resumed = trainer_cls(_nets(paired, seed=123), cfg, tmp_path / "b.pt").fit(data, progress=False)
    assert resumed.step == 6
    assert _same_weights(straight.nets, resumed.nets)
    assert [h["G_gan"] for h in straight.history] == [h["G_gan"] for h in resumed.history]


def test_same_seed_same_numbers(tmp_path):
    data = _data("facades").train
    cfg = TrainConfig(steps=3, batch_size=2, ckpt_every=100)
    runs = [Pix2PixTrainer(_nets(True), cfg, tmp_path / f"{i}.pt").fit(data, progress=False) for i in range(2)]
    assert [h["G_L1"] for h in runs[0].history] == [h["G_L1"] for h in runs[1].history]
    other = Pix2PixTrainer(_nets(True), TrainConfig(steps=3, batch_size=2, ckpt_every=100, seed=5),
                           tmp_path / "x.pt").fit(data, progress=False)
    assert [h["G_L1"] for h in other.history] != [h["G_L1"] for h in runs[0].history]


def test_a_checkpoint_of_other_settings_is_set_aside_not_resumed(tmp_path):
    data = _data("facades").train
    cfg = from_preset(CFG, 2, 0)
    assert (cfg.batch_size, cfg.eval_every, cfg.ckpt_every) == (CFG.data.batch_size, CFG.eval_every, CFG.ckpt_every)
    Pix2PixTrainer(_nets(True), cfg, tmp_path / "t.pt", stage={"key": "run1"}).fit(data, progress=False)
    assert Pix2PixTrainer(_nets(True), cfg, tmp_path / "t.pt", stage={"key": "run1"}).resume()
    other = Pix2PixTrainer(_nets(True), cfg, tmp_path / "t.pt", stage={"key": "run2"})
    assert not other.resume()                               # the new run starts from scratch ...
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("t.stale-")]
    assert not (tmp_path / "t.pt").exists() and len(aside) == 1
    assert load_artifact(aside[0])["stage"] == {"key": "run1"}    # ... and the old one is kept, settings included


def test_sigterm_stops_like_ctrl_c(tmp_path):
    data = _data("facades").train
    cfg = TrainConfig(steps=5, batch_size=2, ckpt_every=100)

    class TermDuringStep2(Pix2PixTrainer):
        def train_step(self, batch, g):
            if len(self.history) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().train_step(batch, g)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM after step 2"):
        TermDuringStep2(_nets(True), cfg, tmp_path / "t.pt").fit(data, progress=False)
    assert load_artifact(tmp_path / "t.pt")["step"] == 2


def test_training_reduces_the_reconstruction_loss(tmp_path):
    data = _data("facades").train
    cfg = TrainConfig(steps=30, batch_size=4, ckpt_every=100, lr=1e-3)
    tr = Pix2PixTrainer(_nets(True), cfg, tmp_path / "t.pt").fit(data, progress=False)
    first = sum(h["G_L1"] for h in tr.history[:5]) / 5
    last = sum(h["G_L1"] for h in tr.history[-5:]) / 5
    assert last < 0.8 * first


def test_load_or_train_loads_the_second_time(tmp_path):
    cfg = get_preset("smoke", TINY)
    splits = load_task("facades", cfg)
    G1, art1 = stages.teacher(cfg, splits, tmp_path, progress=False)
    assert art1.trained_now and art1.path.name.startswith("teacher_facades_s0_")
    content = load_artifact(art1.path)
    assert set(content) >= {"stage", "weights", "history", "evals"} and set(content["weights"]) == {"G", "D"}
    assert content["stage"]["key"] == art1.key and content["stage"]["settings"]["teacher"]["steps"] == 2
    G2, art2 = stages.teacher(cfg, splits, tmp_path, progress=False)
    assert not art2.trained_now
    assert all(torch.equal(a, b) for a, b in zip(G1.state_dict().values(), G2.state_dict().values()))
    # other settings do not silently reuse the old teacher, and do not remove it either
    _, art3 = stages.teacher(cfg.override({"teacher.steps": 3}), splits, tmp_path, progress=False)
    assert art3.trained_now and len(art3.history) == 3 and art1.path.exists()
    # settings of later stages are not part of the teacher's key
    _, art4 = stages.teacher(cfg.override({"search.population": 3, "supernet.steps": 1}), splits, tmp_path,
                             progress=False)
    assert not art4.trained_now and art4.path == art1.path


def test_speed_ups_change_how_a_stage_trains_not_what_it_is(tmp_path):
    """channels_last + fused Adam: the same stage (same key, so an eager artifact loads under them and vice versa),
    and the same weights to float rounding."""
    cfg = get_preset("smoke", TINY)
    splits = load_task("facades", cfg)
    G_eager, eager = stages.teacher(cfg, splits, tmp_path / "eager", progress=False)
    fast_cfg = cfg.override({"speed_ups": ["channels_last", "fused_adam"]})
    G_fast, fast = stages.teacher(fast_cfg, splits, tmp_path / "fast", progress=False)
    assert fast.trained_now and fast.key == eager.key
    # outputs, not weights: a conv bias right before an instance norm gets only rounding noise as gradient, which
    # Adam scales up to full steps in either layout, while the image does not depend on that bias at all
    with torch.no_grad():
        x = splits.test.A[:2]
        assert (G_eager(x) - G_fast(x)).abs().max() < 1e-3
    _, loaded = stages.teacher(fast_cfg, splits, tmp_path / "eager", progress=False)
    assert not loaded.trained_now


def test_teacher_seeds_and_batch_size(tmp_path):
    """One teacher per seed offset, each its own artifact (the seeds trained beside it are not part of its key);
    teacher.batch_size overrides data.batch_size for the teacher only."""
    cfg = get_preset("smoke", TINY)
    splits = load_task("facades", cfg)
    _, alone = stages.teacher(cfg, splits, tmp_path, seed=3, progress=False)
    both = stages.teachers(cfg.override({"teacher.seeds": (0, 1)}), splits, tmp_path, seed=3, progress=False)
    assert list(both) == [3, 4]
    assert both[3].artifact.key == alone.key and not both[3].artifact.trained_now and both[4].artifact.trained_now
    one = cfg.override({"teacher.batch_size": 1})
    assert stages.teacher_config(one, True, 0).batch_size == 1 and stages.teacher_config(cfg, True, 0).batch_size == 2


def test_an_unreadable_artifact_is_set_aside_and_retrained(tmp_path):
    cfg = get_preset("smoke", TINY)
    splits = load_task("facades", cfg)
    _, art = stages.teacher(cfg, splits, tmp_path, progress=False)
    art.path.write_bytes(art.path.read_bytes()[:100])     # e.g. a copy cut short
    _, again = stages.teacher(cfg, splits, tmp_path, progress=False)
    assert again.trained_now and again.path == art.path
    assert len([p for p in tmp_path.iterdir() if ".unreadable-" in p.name]) == 1


def test_same_seed_same_teacher_and_same_scores(tmp_path):
    """The smoke recipe end to end (data, init, training, scoring) twice with one seed gives identical numbers."""
    from gclib.metrics import GeneratorScorer, OfflineFeatures
    cfg = get_preset("smoke", {**TINY, "data.n_heldout": 8, "data.n_test": 8, "teacher.steps": 3})
    results = []
    for run in ("a", "b"):
        torch.manual_seed(0)                        # what the notebook's first cell does
        splits = load_task("facades", cfg, seed=0)
        torch.manual_seed(1)
        scorer = GeneratorScorer(splits.test.A, splits.test.B, OfflineFeatures().eval())
        torch.rand(7 if run == "a" else 3)          # whatever ran before must not change the teacher
        G, art = stages.teacher(cfg, splits, tmp_path / run, seed=0, progress=False)
        results.append((scorer(G), [h["G_L1"] for h in art.history]))
    assert results[0] == results[1]


def test_the_same_seed_gives_the_same_weights_in_a_fresh_process(tmp_path):
    """Same seed, same numbers: two processes training the same stage on the same thread count write bit-identical
    weights (every random draw comes from the seed, none from the process). The thread count is part of what makes a
    number: oneDNN splits a convolution's sums by thread, so `gclib run` fixes it per kernel, and the artifact
    records it."""
    import subprocess
    import sys
    run = [sys.executable, "-m", "gclib", "train", "teacher", "--preset", "smoke", "--task", "facades", "--no-eval",
           "--set", "teacher.steps=4", "--set", "data.n_train=8", "--set", "data.n_heldout=4", "--set",
           "data.n_test=4"]
    weights = []
    for out in ("first", "second"):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(run + ["--out", str(tmp_path / out)], env=env, check=True, capture_output=True, timeout=300)
        (path,) = [p for p in (tmp_path / out).glob("teacher_facades_s0_*.pt") if not p.name.endswith(".train.pt")]
        content = load_artifact(path)
        assert content["computed"]["threads"] == 1 and content["computed"]["speed_ups"] == []
        weights.append(content["weights"]["G"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_teacher_speed_ups_apply_to_the_teacher_alone_and_leave_its_key(tmp_path):
    """teacher.speed_ups (the laptop preset's bf16_native) change how the teacher's steps are computed, not which
    artifact it is; a student distilled under the same preset does not get them; an unknown name is refused."""
    from gclib.recipes.trainer import native_bf16
    cfg = get_preset("smoke", {**TINY, "student.steps": 2})
    splits = load_task("facades", cfg)
    _, plain = stages.teacher(cfg, splits, tmp_path / "plain", progress=False)
    fast_cfg = cfg.override({"teacher.speed_ups": ["bf16_native"]})
    teacher = stages.teacher(fast_cfg, splits, tmp_path / "fast", progress=False)
    assert teacher.artifact.trained_now and teacher.artifact.key == plain.key
    computed = load_artifact(teacher.artifact.path)["computed"]
    # bfloat16 where this machine computes it natively (a CPU with AMX), float32 elsewhere
    assert computed["speed_ups"] == ["bf16_native"]
    assert computed["autocast"] == ("torch.bfloat16" if native_bf16("cpu") else "")
    student = stages.student(fast_cfg, splits, teacher, "features", tmp_path / "fast", progress=False)
    assert load_artifact(student.artifact.path)["computed"] == {**computed, "speed_ups": [], "autocast": ""}
    with pytest.raises(ValueError, match="teacher.speed_ups"):
        get_preset("smoke", {"teacher.speed_ups": ["warp"]})


def test_halves_of_files_a_killed_run_was_writing_are_cleared_when_training_resumes(tmp_path):
    cfg = get_preset("smoke", TINY)
    splits = load_task("facades", cfg)
    name = stages.teacher_stage(cfg, splits).filename
    other = tmp_path / ".somebody_elses.pt.abc.tmp"
    for leftover in (tmp_path / f".{name}.x1y2.tmp", tmp_path / f".{name[:-3]}.train.pt.q9.tmp", other):
        leftover.write_bytes(b"half a checkpoint")
    stages.teacher(cfg, splits, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [other.name]    # another artifact's: not ours to take


def test_a_teacher_of_other_training_images_has_another_key():
    """Data seed 1 with model seed 1 (a notebook run with ``seed = 1``) against data seed 0 with model seed 1 (the
    zoo's second teacher): other images, so another key; data seed 0 keys as before the seed was in the key."""
    from types import SimpleNamespace
    cfg = get_preset("smoke", TINY)
    zoo_like, other = load_task("stripes", cfg, seed=0), load_task("stripes", cfg, seed=1)
    assert other.seed == 1 and not torch.equal(zoo_like.train.A, other.train.A)
    assert stages.teacher_stage(cfg, zoo_like, 1).key != stages.teacher_stage(cfg, other, 1).key
    assert stages.teacher_stage(cfg, zoo_like, 1).key == stages.teacher_stage(
        cfg, SimpleNamespace(task="stripes", paired=False), 1).key
    spade = get_family("spade")
    spade_cfg = get_preset("smoke", {"family": "spade"}, task="facades")
    assert spade.task_data(load_task("facades", spade_cfg, seed=1), spade_cfg).seed == 1   # kept through relabelling
