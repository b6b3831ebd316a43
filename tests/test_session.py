"""The notebooks' Session: the stages it runs are the library's stages with the session's settings, each built once."""
import pytest
import torch

from gclib import stages
from gclib.session import Session, torch_device

TINY = {"data.n_train": 8, "data.n_heldout": 4, "data.n_test": 4, "teacher.steps": 2, "teacher.n_blocks": 3,
        "teacher.ngf": 8, "teacher.ndf": 8, "supernet.choices": (4, 6, 8), "supernet.steps": 2, "eval_every": 2,
        "student.ngf": 4, "student.steps": 2, "search.budget_widths": (4,), "search.finetune_steps": 1}


def test_the_session_runs_the_library_stages_with_its_settings_once(tmp_path):
    session = Session("smoke", "facades", seed=3, overrides=TINY, runs_dir=tmp_path, device="cpu")
    teacher = session.teacher()
    assert session.teacher() is teacher                                          # built once per session
    by_hand = stages.teacher(session.cfg, session.splits, tmp_path, 3, torch.device("cpu"), progress=False)
    assert by_hand.artifact.path == teacher.artifact.path                  # the same stage: loaded, not retrained
    assert not by_hand.artifact.trained_now
    supernet = session.supernet()
    assert session.supernet() is supernet and supernet.artifact.stage["parent"] == teacher.artifact.stage["key"]
    config = session.space.smallest()
    (key, tuned), = session.fine_tune({"small": config}, seeds=[5]).items()
    assert key == ("small", 5)
    expected = stages.subnet_stage(session.cfg, session.splits, config, session.cfg.search.finetune_steps, "supernet",
                                   supernet.artifact.stage["key"], 5)
    assert tuned.artifact.stage["key"] == expected.key
    assert session.macs_of(config) == session.family.config_macs(config, session.size, n_blocks=3)
    assert session.seeds == [3 + s for s in session.cfg.student.seeds]


def test_a_session_sets_torchs_seed_once(tmp_path):
    Session("smoke", "facades", seed=7, runs_dir=tmp_path)
    first = torch.rand(3)
    Session("smoke", "facades", seed=7, runs_dir=tmp_path)
    assert torch.equal(first, torch.rand(3))


def test_a_family_session_gives_the_generator_its_inputs_and_us_the_pictures(tmp_path):
    session = Session("smoke", "facades", family="spade", runs_dir=tmp_path)
    assert session.pictures.train.A.shape[1] == 3                                # the colour-coded label maps
    assert session.splits.train.A.shape[1] == session.arch["label_nc"]                # one-hot, what GauGAN reads
    assert torch.equal(session.splits.train.A.argmax(1), session.pictures.train.label_A)


def test_a_device_that_is_not_there_is_named(tmp_path):
    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'gpu0': use auto, cpu or cuda"):
        torch_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            Session("smoke", "facades", device="cuda", runs_dir=tmp_path)
