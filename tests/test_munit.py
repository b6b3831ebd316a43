"""MUNIT's recipe and evaluation (notebook 07): the multimodal coats task, the A -> B translator, the teacher's and the
distiller's losses, random styles and diversity, and the stages end to end at a tiny size."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from gclib import metrics, stages
from gclib.data import generate_embedded, load_task
from gclib.data.embedded import ANIMAL_CLASSES, COAT_COLOURS, _animal, coat_variants
from gclib.families import get_family
from gclib.families.munit.networks import translator
from gclib.presets import get_preset
from gclib.recipes.munit import MUNITDistillTrainer, MUNITTrainer, munit_config, teacher_nets

MUNIT = get_family("munit")
TINY = {"family": "munit", "data.n_train": 8, "data.n_heldout": 4, "data.n_test": 4, "teacher.steps": 4,
        "supernet.steps": 4, "search.finetune_steps": 2, "eval_every": 2, "ckpt_every": 2}


@pytest.fixture(scope="module")
def tiny():
    cfg = get_preset("smoke", TINY, task="coats")
    return cfg, load_task("coats", cfg)


def test_coats_draw_one_scene_in_many_styles():
    """Each plain animal's right answers: the same animal (the label map of A with the animal coated), in coats of
    the task's flat colours, not all alike. B's coats cover every colour."""
    a = generate_embedded("coats", "test", 3, 32)
    variants = coat_variants("test", 3, 32, k=4)                        # (3, 4, 32, 32, 3)
    plain, striped = ANIMAL_CLASSES.index("plain animal"), ANIMAL_CLASSES.index("striped animal")
    for i in range(3):
        animal = a["label_A"][i] == plain
        for j in range(4):
            differs = (variants[i, j] != a["A"][i]).any(-1)
            assert differs[animal].mean() > 0.5 and not differs[~animal].any()   # only the coat is redrawn
            brightest = variants[i, j][animal].astype(float).max(0)          # the coat's lit colour
            assert min(np.abs(brightest - np.minimum(np.array(c) * 1.1, 255)).max() for c in COAT_COLOURS) < 30
        assert len({variants[i, j].tobytes() for j in range(4)}) > 1
    coats = generate_embedded("coats", "train", 60, 32)["coat_B"]
    assert set(coats.tolist()) == set(range(len(COAT_COLOURS)))
    # the coats task shares no image with the stripes task, and a coat-free stripe is the zebra's
    assert not np.array_equal(a["A"], generate_embedded("stripes", "test", 3, 32)["A"])
    zebra = _animal(np.random.default_rng(5), 32, True)[0]
    assert np.array_equal(zebra, _animal(np.random.default_rng(5), 32, True, None)[0])


def test_fid_sees_a_collapse_to_one_coat():
    """The instrument for notebook 07: real coats against an independent real sample is the floor; the same scenes
    in a single coat (what a generator that ignores its style draws) lie far above it."""
    ext = metrics.get_extractor("offline")
    as_tensor = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    real = metrics.extract(ext, as_tensor(generate_embedded("coats", "heldout", 200, 32)["B"]))
    other = metrics.extract(ext, as_tensor(generate_embedded("coats", "test", 200, 32)["B"]))
    one = np.stack([_animal(np.random.default_rng(i), 32, True, (2,))[0] for i in range(200)])
    floor, collapsed = metrics.fid(real, other), metrics.fid(real, metrics.extract(ext, as_tensor(one)))
    assert collapsed > 10 * floor


def test_translator_reads_content_with_g_a_and_draws_with_g_b():
    torch.manual_seed(0)
    G_A, G_B = MUNIT.teacher(8), MUNIT.teacher(8)
    T = translator(G_A, G_B).eval()
    x, s = torch.randn(2, 3, 32, 32), torch.randn(2, 8, 1, 1)
    with torch.no_grad():
        assert torch.equal(T(x, s), G_B.decode(G_A.enc_content(x), s))
    state = T.state_dict()
    assert set(state) == set(G_B.state_dict())
    assert torch.equal(state["enc_content.model.0.conv.weight"], G_A.state_dict()["enc_content.model.0.conv.weight"])
    assert torch.equal(state["mlp.model.0.fc.weight"], G_B.state_dict()["mlp.model.0.fc.weight"])
    assert G_B.enc_content is not G_A.enc_content                          # G_B itself is left as it was


def test_teacher_learns_to_rebuild_images(tmp_path, tiny):
    """MUNIT's image reconstruction term falls as the two auto-encoders train."""
    cfg, data = tiny
    c = munit_config(cfg, 24, 0)
    c.batch_size = 2
    trainer = MUNITTrainer(stages._seeded(0, lambda: teacher_nets(MUNIT, cfg)), c, tmp_path / "teacher.pt")
    trainer.fit(data.train, progress=False)
    first, last = np.mean([h["image"] for h in trainer.history[:4]]), np.mean([h["image"] for h in trainer.history[-4:]])
    assert last < 0.8 * first
    assert {"G_gan", "image", "style", "content", "D"} <= set(trainer.history[-1])


def test_a_student_identical_to_its_teacher_has_nothing_to_learn(tmp_path, tiny):
    """The distiller's three distances are 0 when the student is the teacher (identity mapping); the style term
    only on the steps that read a real B image's style (every other step)."""
    cfg, data = tiny
    torch.manual_seed(0)
    T = MUNIT.teacher(8).eval()
    maps = nn.ModuleList([nn.Conv2d(32, 32, 1)])
    identity = {"0.weight": torch.eye(32).view(32, 32, 1, 1), "0.bias": torch.zeros(32)}
    nets = {"G": copy.deepcopy(T), "D": MUNIT_D(cfg), "maps": maps}
    c = munit_config(cfg, 2, 0, "features")
    trainer = MUNITDistillTrainer(nets, T, c, tmp_path / "student.pt", family=MUNIT)
    batch = data.train.batch(torch.arange(4), torch.Generator().manual_seed(0))
    for step in (0, 1):
        trainer.step = step
        trainer.nets["G"].load_state_dict(T.state_dict())     # the last G step moved them
        trainer.nets["maps"].load_state_dict(identity)
        trainer.nets["G"].eval()
        losses = trainer.train_step(batch, torch.Generator().manual_seed(step))
        assert losses["G_recon"] < 1e-6 and losses["distill"] < 1e-6 and losses["style"] < 1e-6, (step, losses)
    other = MUNIT.teacher(8)
    trainer.nets["G"].load_state_dict(other.state_dict())
    trainer.step = 1
    assert trainer.train_step(batch, torch.Generator().manual_seed(1))["style"] > 0
    trainer.step = 2
    assert trainer.train_step(batch, torch.Generator().manual_seed(2))["style"] == 0


def MUNIT_D(cfg):
    from gclib.recipes.munit import discriminator
    return discriminator(MUNIT, cfg)


def test_scores_use_the_same_random_styles_for_every_model_and_diversity_catches_a_collapse(tiny):
    cfg, data = tiny
    torch.manual_seed(0)
    G = MUNIT.teacher(8)
    scorer = metrics.split_scorer(data, "heldout", metrics.get_extractor("offline"), resamples=0,
                                  style_dim=MUNIT.style_dim)
    first, again = scorer(G), scorer(G)
    assert first == again and first["diversity"] > 0

    class IgnoresStyle(nn.Module):            # one style for every code: what a collapsed student draws
        def __init__(self, G):
            super().__init__()
            self.G = G

        def forward(self, x, style=None):
            return self.G(x, torch.zeros(len(x), 8, 1, 1))
    assert scorer(IgnoresStyle(G))["diversity"] == 0
    variants = coat_variants("heldout", 8, 32, k=2)                # two coats of six colours: some pairs alike
    real = metrics.perceptual_distances(*[torch.from_numpy(v).permute(0, 3, 1, 2) for v in
                                          variants.transpose(1, 0, 2, 3, 4)])
    differ = (variants[:, 0] != variants[:, 1]).reshape(8, -1).any(1)
    assert differ.any() and np.array_equal(np.asarray(real) > 0, differ)


def test_stages_train_a_munit_teacher_supernet_and_subnetwork(tmp_path, tiny):
    cfg, data = tiny
    teacher = stages.teacher(cfg, data, tmp_path, progress=False)
    assert teacher.artifact.path.name.startswith("teacher_coats_munit_s0_")
    assert set(teacher.artifact.weights) == {"G", "D"}                    # the translator and domain B's D
    with pytest.raises(ValueError, match="trains the student variants"):
        stages.student(cfg, data, teacher, "alone", tmp_path, progress=False)
    sup = stages.supernet(cfg, data, teacher, tmp_path, progress=False)
    assert {"G_gan", "G_recon", "distill", "style", "D"} <= set(sup.artifact.history[-1])
    config = MUNIT.space(cfg.supernet.unpaired_choices).smallest()
    tuned = stages.subnet(cfg, data, teacher, config, tmp_path, steps=2, start="supernet", supernet=sup,
                          progress=False)
    x, s = data.test.A[:2], torch.randn(2, 8, 1, 1)
    assert tuned.net.config == config and tuned.net(x, s).shape == (2, 3, 32, 32)
    assert not stages.teacher(cfg, data, tmp_path, progress=False).artifact.trained_now


def test_an_exported_munit_draws_in_the_style_code_it_is_given(tmp_path):
    from gclib.export import export, exported_outputs, load_exported
    torch.manual_seed(0)
    G = MUNIT.student(MUNIT.uniform(4)).eval()
    paths = export(G, tmp_path, "munit", 32, "munit")
    x, s = torch.rand(3, 3, 32, 32) * 2 - 1, torch.randn(3, 8, 1, 1)
    with torch.no_grad():
        reference = G(x, s)
        assert not torch.allclose(reference, G(x, -s))                          # the code matters
        gaps = {"reloaded": (load_exported(tmp_path, "munit")(x, s) - reference).abs().max().item(),
                **{k: (v - reference).abs().max().item() for k, v in exported_outputs(paths, (x, s)).items()}}
    assert max(gaps.values()) < 1e-4, gaps
    meta = torch.load(paths["weights"], weights_only=True)["meta"]
    assert meta["inputs"] == ["A", "style"] and meta["GMACs"] == pytest.approx(MUNIT.config_macs(G.config, 32) / 1e9)
