import time

import pytest
import torch
from torch import nn

from gclib.families.resnet import MobileResnetGenerator, ResnetGenerator
from gclib.profiling import accelerate, bench, layer_kind, measure_latency, op_breakdown, profile_models


class Sleeper(nn.Module):
    """A model whose latency is known: it sleeps ``ms`` milliseconds."""

    def __init__(self, ms: float):
        super().__init__()
        self.ms = ms

    def forward(self, x):
        time.sleep(self.ms / 1000)
        return x


def test_latency_is_a_robust_summary_of_the_timed_runs():
    lat = measure_latency(Sleeper(20), batch=4, resolution=8, warmup=1, repeats=5)
    assert lat["runs"] >= 5
    assert 20 <= lat["median_ms"] < 200                       # it slept 20 ms per call
    assert lat["q25_ms"] <= lat["median_ms"] <= lat["q75_ms"]
    assert lat["throughput"] == pytest.approx(4 * 1000 / lat["median_ms"])
    assert lat["threads"] == torch.get_num_threads()


def test_min_seconds_adds_runs():
    assert measure_latency(Sleeper(5), resolution=8, warmup=0, repeats=2, min_seconds=0.1)["runs"] >= 10


def test_profile_table_has_one_row_per_model_resolution_and_batch():
    models = {"teacher": ResnetGenerator(ngf=8, n_blocks=3), "student": MobileResnetGenerator("4_4_4_4_4_4_4_4", n_blocks=3)}
    rows = profile_models(models, [32, 64], [1, 2], warmup=1, repeats=2, progress=False)
    assert len(rows) == 8
    macs = {(r["model"], r["resolution"]): r["GMACs"] for r in rows}
    assert macs["student", 64] < macs["teacher", 64]
    assert macs["teacher", 64] == pytest.approx(4 * macs["teacher", 32])  # cost grows with the pixels
    # every timed pass is kept: the median the table reports is theirs, and the plot draws each of them
    assert all(len(r["times_ms"]) == r["runs"] and float(torch.tensor(r["times_ms"]).median()) == r["median_ms"]
               for r in rows)
    import matplotlib
    matplotlib.use("Agg")
    from gclib import plots
    fig = plots.latency_distribution(rows, 64, 2)
    ax = fig.axes[0]
    drawn = sorted(float(x) for c in ax.collections for x, _ in c.get_offsets())
    assert drawn == pytest.approx(sorted(t for r in rows if (r["resolution"], r["batch"]) == (64, 2)
                                         for t in r["times_ms"]))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["student", "teacher"]     # cheapest first


def test_layer_kinds():
    assert layer_kind(nn.Conv2d(8, 8, 3, groups=8)) == "depthwise conv"
    assert layer_kind(nn.Conv2d(8, 16, 1)) == "pointwise conv (1x1)"
    assert layer_kind(nn.Conv2d(8, 16, 3)) == "dense conv (3x3)"
    assert layer_kind(nn.ConvTranspose2d(8, 4, 3)) == "transposed conv"
    assert layer_kind(nn.Sequential()) is None


def test_op_breakdown_covers_every_kind_of_layer():
    net = MobileResnetGenerator("4_4_4_4_4_4_4_4", n_blocks=3)
    rows = {r["kind"]: r for r in op_breakdown(net, resolution=32, repeats=2)}
    assert rows["depthwise conv"]["layers"] == 2 * 3 and rows["pointwise conv (1x1)"]["layers"] == 2 * 3
    assert rows["transposed conv"]["layers"] == 2
    assert {"dense conv (7x7)", "dense conv (3x3)", "norm"} <= set(rows)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    assert all(r["ms"] > 0 for r in rows.values())


@pytest.mark.parametrize("technique", ["channels_last", "torchscript"])
def test_accelerated_models_compute_the_same_images(technique):
    torch.manual_seed(0)
    net = MobileResnetGenerator("4_4_4_4_4_4_4_4", n_blocks=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        fast = accelerate(net, technique, resolution=32, batch=2)
        got = fast(x.contiguous(memory_format=torch.channels_last) if technique == "channels_last" else x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_unknown_technique_names_the_choices():
    with pytest.raises(ValueError, match="torchscript"):
        accelerate(nn.Identity(), "magic")


def test_bench_reports_the_mac_reduction_and_both_models():
    lines = []
    rows = bench("16_16_16_16_16_16_16_16", resolution=32, techniques=("eager",), repeats=2, log=lines.append)
    assert {r["model"] for r in rows} == {"teacher", "compressed 16_16_16_16_16_16_16_16"}
    teacher, student = sorted(rows, key=lambda r: -r["GMACs"])
    assert any(line.startswith(f"MAC reduction: {teacher['GMACs'] / student['GMACs']:.1f}x") for line in lines)


def test_bench_cli_reads_the_searched_config_of_notebook_04(tmp_path, capsys):
    from gclib.cli import main
    search = tmp_path / "search_facades.json"
    search.write_text('{"config": "16_8_16_8_16_8_16_8", "GMACs": 0.0}')
    assert main(["bench", "--compressed", str(search), "--size", "32", "--techniques", "eager", "--repeats",
                 "2"]) == 0
    assert "compressed 16_8_16_8_16_8_16_8" in capsys.readouterr().out
    assert main(["bench", "--compressed", str(tmp_path / "missing.json")]) == 2
    assert "notebook 04 writes" in capsys.readouterr().err


@pytest.mark.parametrize("net", [ResnetGenerator(ngf=8, n_blocks=3), MobileResnetGenerator("8_8_16_8_8_8_8_8")])
def test_macs_by_kind_add_up_to_the_counter(net):
    from gclib.metrics import count_macs
    from gclib.profiling import macs_by_kind
    assert sum(macs_by_kind(net, 32).values()) == count_macs(net, 32)


def test_training_throughput_measures_every_step_and_compares_with_eager(capsys):
    from gclib.cli import main
    assert main(["bench", "--train", "--preset", "smoke", "--techniques", "eager,channels_last,preset",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for step in ("teacher pix2pix", "teacher cyclegan", "student distill", "supernet"):
        assert f"{step}" in out and out.count(step) == 3, out
    assert "1.00x eager's time" in out and " preset " in out


def test_training_speed_ups_keep_the_step_and_refuse_unknown_ones():
    """channels_last and fused Adam change how a step runs, not what it computes."""
    import tempfile

    from gclib.families import get_family
    from gclib.presets import get_preset
    from gclib.recipes.teacher import teacher_config, teacher_nets, trainer_for
    from gclib.recipes.trainer import step_generator
    fam, p = get_family("resnet"), get_preset("smoke")
    g = torch.Generator().manual_seed(0)
    batch = {"A": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, "B": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1}
    weights = []
    with tempfile.TemporaryDirectory() as folder:
        for techniques in ([], ["channels_last", "fused_adam"]):
            torch.manual_seed(0)
            trainer = trainer_for(True)(teacher_nets(fam, p, True), teacher_config(p, True, 0, 5), f"{folder}/x.pt")
            start = {k: v.clone() for k, v in trainer.nets["G"].state_dict().items()}
            trainer.speed_up(techniques)
            # the fused kernel is what runs: loading the old optimiser's state must not bring back its fused=None
            assert all(group["fused"] is ("fused_adam" in techniques or None)
                       for opt in trainer.optimizers.values() for group in opt.param_groups)
            for step in range(2):
                trainer.train_step(trainer.to_device(batch), step_generator(0, step))
            weights.append(torch.cat([(v - start[k]).flatten() for k, v in trainer.nets["G"].state_dict().items()]))
        # resuming a checkpoint of an unfused optimiser keeps the fused one fused (the speed-ups decide, not the file)
        plain = trainer_for(True)(teacher_nets(fam, p, True), teacher_config(p, True, 0, 5), f"{folder}/y.pt")
        trainer.load_state(plain.state_dict())
        assert all(group["fused"] for opt in trainer.optimizers.values() for group in opt.param_groups)
        with pytest.raises(ValueError, match="unknown training speed-ups \\['warp'\\]"):
            trainer.speed_up(["warp"])
    # Adam's steps have the size of the learning rate whatever the gradient's, so rounding differences of the two
    # layouts show at that scale: the updates agree in direction
    assert torch.nn.functional.cosine_similarity(weights[0], weights[1], dim=0) > 0.99


def test_bf16_autocast_trains_in_bfloat16_and_keeps_float32_weights():
    """The "bf16" speed-up runs forward and backward passes in bfloat16 (on a GPU's bf16 units; here on the CPU), while
    weights, optimiser state and losses stay float32; the update agrees in direction with a float32 step."""
    import tempfile

    from gclib.families import get_family
    from gclib.presets import get_preset
    from gclib.recipes.teacher import teacher_config, teacher_nets, trainer_for
    from gclib.recipes.trainer import step_generator
    fam, p = get_family("resnet"), get_preset("smoke")
    g = torch.Generator().manual_seed(0)
    batch = {"A": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, "B": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1}
    other = {k: torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for k in ("A", "B")}
    updates, dtypes = [], []
    with tempfile.TemporaryDirectory() as folder:
        for techniques, images in (([], batch), (["bf16"], batch), ([], other)):
            torch.manual_seed(0)
            trainer = trainer_for(True)(teacher_nets(fam, p, True), teacher_config(p, True, 0, 5), f"{folder}/x.pt")
            start = {k: v.clone() for k, v in trainer.nets["G"].state_dict().items()}
            trainer.speed_up(techniques)
            seen = []
            hook = trainer.nets["G"].model[1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
            trainer.step_once(images, step_generator(0, 0))
            hook.remove()
            dtypes.append(seen[0])
            updates.append(torch.cat([(v - start[k]).flatten() for k, v in trainer.nets["G"].state_dict().items()]))
            assert all(v.dtype == torch.float32 for v in trainer.nets["G"].state_dict().values())
    assert dtypes == [torch.float32, torch.bfloat16, torch.float32]
    # Adam's first step is +-lr per weight, so bfloat16 rounding flips the sign of the tiniest gradients: the same
    # batch agrees in direction far better than the same float32 step on another batch does
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    assert cos(updates[0], updates[1]) > 0.8 > cos(updates[0], updates[2]) + 0.2, [cos(updates[0], u) for u in updates]
