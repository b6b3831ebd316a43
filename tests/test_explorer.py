import pytest
import torch

from gclib.explorer import BudgetExplorer, budget_labels, gmacs
from gclib.families.resnet import RESNET, MobileResnetGenerator
from gclib.nn.gan import init_weights

config_macs = RESNET.config_macs

CONFIGS = ["4_4_4_4_4_4_4_4", "4_8_4_8_4_8_4_8", "8_8_8_8_4_4_4_4", "8_8_8_8_8_8_8_8"]


def _explorer(fids=(5.0, 3.0, 4.0, 1.0), best_under_budget=True):
    rows = [{"config": c, "macs": config_macs(c, 16, 3), "fid": f, "kid": f / 10} for c, f in zip(CONFIGS, fids)]
    built, timed = [], []

    def make_model(config):
        built.append(config)
        torch.manual_seed(len(built))
        return init_weights(MobileResnetGenerator(config, n_blocks=3))

    def latency(model):
        timed.append(model)
        return 10.0 * len(timed)

    teacher = init_weights(MobileResnetGenerator("16_16_16_16_16_16_16_16", n_blocks=3))
    inputs = torch.rand(3, 3, 16, 16) * 2 - 1
    ex = BudgetExplorer(rows, make_model, inputs, teacher, {"macs": config_macs("16_16_16_16_16_16_16_16", 16, 3),
                                                            "fid": 0.5, "kid": 0.05}, latency,
                        best_under_budget=best_under_budget)
    return ex, rows, built, timed


def test_a_budget_shows_the_best_network_within_it_built_and_timed_once():
    ex, rows, built, timed = _explorer()
    assert ex.budgets == sorted(r["macs"] for r in rows)
    for budget in ex.budgets:
        view = ex.view(budget)
        fitting = [r for r in rows if r["macs"] <= budget]
        assert view["row"] == min(fitting, key=lambda r: r["fid"])
        assert view["images"].dtype == torch.uint8 and view["images"].shape == (3, 3, 16, 16)
    assert len(built) == len(set(built))                                    # each picked network built once
    ex.view(ex.budgets[-1])
    assert len(timed) == 1 + len(built)                                     # the teacher, then each network once
    text = ex.describe(ex.budgets[-1])
    assert "8_8_8_8_8_8_8_8" in text and f">{gmacs(rows[-1]['macs'])}<" in text


def test_neighbouring_small_budgets_read_apart():
    """Two networks of the smoke preset's size once read 0.0037 G alike (fixed decimals); significant digits do not."""
    assert gmacs(3_701_234) == "0.003701" and gmacs(3_652_000) == "0.003652" and gmacs(281.41e9) == "281.4"
    budgets = [3_652_000, 3_701_234, 3_701_300]             # the last two agree to 4 digits: the labels take more
    labels = budget_labels(budgets)
    assert len(set(labels)) == 3
    assert all(abs(float(label.split()[0]) * 1e9 - b) <= 1e-4 * b for label, b in zip(labels, budgets))


def test_exact_mode_steps_through_every_network():
    ex, rows, built, _ = _explorer(best_under_budget=False)
    by_macs = sorted(rows, key=lambda r: r["macs"])
    assert [ex.view(b)["row"]["config"] for b in ex.budgets] == [r["config"] for r in by_macs]
    with pytest.raises(ValueError, match="explorer's budgets"):
        ex.view(ex.budgets[0] + 1)


def test_the_widget_follows_its_slider():
    ex, rows, _, _ = _explorer(best_under_budget=False)
    box = ex.widget()
    slider, info, image = box.children[0], box.children[1], box.children[-1]
    slider.value = ex.budgets[0]
    first = (info.value, image.value)
    slider.value = ex.budgets[-1]
    assert info.value != first[0] and image.value != first[1]
    assert rows[-1]["config"] in info.value and image.value[:4] == b"\x89PNG"


def test_static_figure_has_the_teacher_and_one_row_per_budget():
    ex, _, _, _ = _explorer()
    fig = ex.figure(ex.budgets[:2], n=2)
    assert len(fig.axes) == 3
    assert "teacher" in fig.axes[0].get_ylabel()


def test_an_empty_table_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        BudgetExplorer([], None, None, None, {}, None)


def test_a_style_slider_redraws_teacher_and_sub_network_with_the_chosen_code():
    from gclib.data import to_uint8
    from gclib.families import get_family
    munit = get_family("munit")
    torch.manual_seed(0)
    supernet = munit.supernet(8)
    configs = [munit.uniform(4), munit.uniform(8)]
    rows = [{"config": c, "macs": munit.config_macs(c, 32), "fid": f} for c, f in zip(configs, (2.0, 1.0))]
    styles = torch.randn(3, 8, 1, 1)
    ex = BudgetExplorer(rows, lambda c: munit.extract(supernet, c), torch.rand(2, 3, 32, 32) * 2 - 1,
                        munit.teacher(8), {"macs": munit.teacher_macs(8, 32), "fid": 0.5, "kid": 0.1},
                        lambda model: 1.0, shown=(("fid", "FID"),), styles=styles)
    box = ex.widget()
    budget_slider, style_slider, picked = box.children[0], box.children[1], box.children[-1]
    before = picked.value
    teacher_0, sub_0 = ex.images(ex.budgets[-1], 0)
    style_slider.value = 2
    teacher_2, sub_2 = ex.images(ex.budgets[-1], 2)
    assert picked.value != before and not torch.equal(teacher_0, teacher_2) and not torch.equal(sub_0, sub_2)
    net = munit.extract(supernet, configs[-1]).eval()
    with torch.no_grad():                                          # the picked network drawn with code 2
        expected = net(ex.inputs, styles[2:3].expand(2, 8, 1, 1))
    assert torch.equal(sub_2, to_uint8(expected))
