import random

import pytest
import torch

from gclib.metrics import count_macs
from gclib.mobile import FAST_CYCLEGAN_CHOICES, MobileResnetGenerator, encode_config
from gclib.models import init_weights
from gclib.supernet import SuperMobileResnetGenerator, extract_subnet


def _random_configs(n, choices, seed=0):
    rng = random.Random(seed)
    return [encode_config([rng.choice(choices) for _ in range(8)]) for _ in range(n)]


def test_full_width_supernet_is_the_mobile_generator():
    torch.manual_seed(0)
    sup = init_weights(SuperMobileResnetGenerator(ngf=16, n_blocks=3)).eval()
    plain = MobileResnetGenerator(ngf=16, n_blocks=3).eval()
    plain.load_state_dict(sup.state_dict())                       # same names and shapes
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sup(x), plain(x), atol=1e-6)


@pytest.mark.parametrize("config", _random_configs(12, (16, 12, 8, 4)))
def test_extracted_subnet_equals_the_supernet_slice(config):
    torch.manual_seed(0)
    sup = init_weights(SuperMobileResnetGenerator(ngf=16, n_blocks=3)).eval()
    sub = extract_subnet(sup, config).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = sup.set_config(config)(x)
        assert (sub(x) - expected).abs().max() < 1e-5
    assert count_macs(sub, 32) == count_macs(MobileResnetGenerator(config=config, n_blocks=3), 32)
    assert count_macs(sub, 32) < count_macs(MobileResnetGenerator(ngf=16, n_blocks=3), 32) or set(config.split("_")) == {"16"}


def test_supernet_at_paper_widths_extracts_guide_configs():
    sup = SuperMobileResnetGenerator(ngf=64)
    sub = extract_subnet(sup, "16_16_24_16_32_64_16_24")
    assert count_macs(sub, 256) / 1e9 == pytest.approx(2.62, abs=0.01)     # GUIDE: Fast horse2zebra


def test_weights_are_shared_first_k():
    sup = SuperMobileResnetGenerator(ngf=16, n_blocks=3)
    sub = extract_subnet(sup, "8_8_8_8_8_8_8_8")
    assert torch.equal(sub.model[1].weight, sup.model[1].weight[:8])
    assert torch.equal(sub.model[4].weight, sup.model[4].weight[:16, :8])       # down1: 2*8 out of 2*16, 8 in


def test_too_wide_config_says_the_limit():
    with pytest.raises(ValueError, match="at most 16"):
        SuperMobileResnetGenerator(ngf=16, n_blocks=3).set_config("32_16_16_16_16_16_16_16")


def _ofa_trainer(tmp_path, steps=2, seed=0):
    from gclib.distill import distill_config
    from gclib.models import NLayerDiscriminator, ResnetGenerator
    from gclib.supernet import SupernetTrainer, elastic_mappings
    from gclib.train import TrainConfig
    torch.manual_seed(0)
    teacher = ResnetGenerator(ngf=8, n_blocks=3)
    sup = init_weights(SuperMobileResnetGenerator(ngf=8, n_blocks=3))
    nets = {"G": sup, "D": init_weights(NLayerDiscriminator(6, 8)), "maps": elastic_mappings(sup, teacher)}
    cfg = distill_config(TrainConfig(steps=steps, batch_size=2, ckpt_every=100, seed=seed), True, "features")
    return SupernetTrainer(nets, teacher, cfg, tmp_path / "ofa.pt", paired=True, choices=(8, 4))


def test_once_for_all_step_trains_only_the_sampled_slices(tmp_path):
    from gclib.supernet import sample_config
    from gclib.train import step_generator
    # a seed whose first step samples a narrow stem, so some of the stem's filters go unused
    seed = next(s for s in range(100) if sample_config((8, 4), step_generator(s, 0)).startswith("4_"))
    trainer = _ofa_trainer(tmp_path, steps=1, seed=seed)
    data = {"A": torch.rand(4, 3, 32, 32) * 2 - 1, "B": torch.rand(4, 3, 32, 32) * 2 - 1}
    config = sample_config((8, 4), step_generator(seed, 0))             # what step 0 will sample
    stem_before = trainer.nets["G"].model[1].weight.detach().clone()
    trainer.fit(data, progress=False)
    assert trainer.nets["G"].config == config
    c0 = 4
    stem_after = trainer.nets["G"].model[1].weight.detach()
    assert not torch.equal(stem_after[:c0], stem_before[:c0])         # the sampled filters learned
    assert torch.equal(stem_after[c0:], stem_before[c0:])             # the others were not used, so not touched


def test_sampling_is_uniform_and_reproducible():
    from gclib.supernet import sample_config
    from gclib.train import step_generator
    configs = [sample_config(FAST_CYCLEGAN_CHOICES, step_generator(0, t)) for t in range(400)]
    assert configs == [sample_config(FAST_CYCLEGAN_CHOICES, step_generator(0, t)) for t in range(400)]
    first = [int(c.split("_")[0]) for c in configs]
    assert set(first) == set(FAST_CYCLEGAN_CHOICES)
    assert max(first.count(v) for v in FAST_CYCLEGAN_CHOICES) < 2 * 400 / len(FAST_CYCLEGAN_CHOICES)


def test_export_reloads_to_the_same_outputs(tmp_path):
    from gclib.supernet import export_subnet, load_exported
    torch.manual_seed(0)
    sup = init_weights(SuperMobileResnetGenerator(ngf=8, n_blocks=3))
    sub = extract_subnet(sup, "8_4_8_4_8_4_4_8").eval()
    paths = export_subnet(sub, tmp_path, "best", image_size=32, extra={"kid": 1.5})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = sub(x)
        assert torch.equal(load_exported(tmp_path, "best")(x), expected)
        assert torch.allclose(torch.jit.load(str(paths["torchscript"]))(x), expected, atol=1e-6)
    import json
    meta = json.loads(paths["meta"].read_text())
    assert meta["config"] == "8_4_8_4_8_4_4_8" and meta["kid"] == 1.5
    assert meta["GMACs"] == pytest.approx(count_macs(sub, 32) / 1e9)


# ----------------------------------------------------------------------------------------------------------------
# Load-or-train: supernet, stand-alone sub-networks, fine-tuning from the supernet
# ----------------------------------------------------------------------------------------------------------------
def _tiny(tmp_path):
    from gclib.data import load_task
    from gclib.presets import get_preset
    from gclib.train import load_or_train_teacher
    cfg = get_preset("smoke", image_size=32, n_train=8, n_heldout=4, n_test=4, teacher_steps=2, teacher_blocks=3,
                     teacher_ngf=8, ndf=8, supernet_choices=(4, 6, 8), supernet_steps=3, eval_every=3)
    data = load_task("facades", cfg)
    teacher, _ = load_or_train_teacher(cfg, "facades", data, tmp_path, progress=False)
    return cfg, data, teacher


def test_supernet_starts_from_the_teachers_strongest_channels_strongest_first(tmp_path):
    from gclib.supernet import build_supernet_nets
    cfg, data, teacher = _tiny(tmp_path)
    nets = build_supernet_nets(cfg, teacher, True)
    norms = teacher.model[1].weight.abs().sum((1, 2, 3))           # the stem's filters, (ngf,)
    copied = nets["G"].model[1].weight                             # (max width, 3, 7, 7)
    order = torch.argsort(norms, descending=True)[:copied.shape[0]]
    assert torch.equal(copied, teacher.model[1].weight[order])
    # so the narrowest stem keeps the single strongest filter
    assert torch.equal(copied[0], teacher.model[1].weight[norms.argmax()])


def test_supernet_wider_than_the_teacher_is_refused(tmp_path):
    from dataclasses import replace

    from gclib.supernet import build_supernet_nets
    cfg, data, teacher = _tiny(tmp_path)
    with pytest.raises(ValueError, match="not be wider than the teacher"):
        build_supernet_nets(replace(cfg, supernet_choices=(8, 16)), teacher, True)


def test_supernet_and_subnets_load_or_train(tmp_path):
    from gclib.supernet import load_or_train_subnet, load_or_train_supernet
    cfg, data, teacher = _tiny(tmp_path)
    calls = []

    def eval_fn(G):
        calls.append(G.config)
        return {"fid": float(len(calls)), "kid": 0.0}

    sup, info = load_or_train_supernet(cfg, "facades", data, teacher, tmp_path, eval_fn=eval_fn, progress=False)
    assert info["trained_now"] and len(info["history"]) == 3
    assert calls == ["8_8_8_8_8_8_8_8", "4_4_4_4_4_4_4_4"]            # largest and smallest, at step 3
    assert set(info["evals"][0]) == {"step", "fid@largest", "kid@largest", "fid@smallest", "kid@smallest"}
    again, info2 = load_or_train_supernet(cfg, "facades", data, teacher, tmp_path, progress=False)
    assert not info2["trained_now"]
    assert all(torch.equal(a, b) for a, b in zip(sup.state_dict().values(), again.state_dict().values()))

    config = "4_6_8_4_6_8_4_6"
    # zero fine-tuning steps: the sub-network is exactly the supernet's slice, mappings included
    G0, _ = load_or_train_subnet(cfg, "facades", data, teacher, config, tmp_path / "ft0", 0, start="supernet",
                                 supernet=(sup, info2), progress=False)
    x = data["test"]["A"][:2]
    with torch.no_grad():
        assert (G0(x) - again.set_config(config)(x)).abs().max() < 1e-5
    tuned, info3 = load_or_train_subnet(cfg, "facades", data, teacher, config, tmp_path, 2, start="supernet",
                                        supernet=(sup, info2), progress=False)
    assert info3["trained_now"] and tuned.config == config
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), G0.state_dict().values()))
    alone, info4 = load_or_train_subnet(cfg, "facades", data, teacher, config, tmp_path, 2, start="teacher",
                                        progress=False)
    assert info4["trained_now"] and info4["hparams"]["supernet"] is None
    _, info5 = load_or_train_subnet(cfg, "facades", data, teacher, config, tmp_path, 2, start="supernet",
                                    supernet=(sup, info2), progress=False)
    assert not info5["trained_now"]                                 # each start has its own file
    with pytest.raises(ValueError, match="start="):
        load_or_train_subnet(cfg, "facades", data, teacher, config, tmp_path, 2, start="supernet", progress=False)


def test_supernet_step_distils_through_sliced_mappings(tmp_path):
    """A once-for-all step with a narrow sampled trunk only uses (and trains) the first C_s input channels of
    each mapping conv."""
    from gclib.supernet import SupernetTrainer, _base_config, build_supernet_nets
    cfg, data, teacher = _tiny(tmp_path)
    nets = build_supernet_nets(cfg, teacher, True)
    before = [m.weight.detach().clone() for m in nets["maps"]]
    trainer = SupernetTrainer(nets, teacher, _base_config(cfg, 1, 0, True), tmp_path / "s.pt", "cpu", {},
                              paired=True, choices=(4,))              # every width 4: trunk 16 of 32
    trainer.fit(data["train"], progress=False)
    for m, w in zip(nets["maps"], before):
        assert not torch.equal(m.weight[:, :16], w[:, :16])
        assert torch.equal(m.weight[:, 16:], w[:, 16:])
