"""The contract every generator family meets (gclib.families.base.Family), run against each registered family."""
import pytest
import torch

from gclib.export import export, exported_outputs, load_exported
from gclib.families import FAMILIES
from gclib.metrics import count_macs
from gclib.nn.gan import init_weights
from gclib.recipes.distill import FeatureTaps

# Small sizes per family for CPU tests: the supernet's widest entry, teacher width, structure (``arch``), image size.
TINY = {"resnet": {"max_width": 8, "choices": (4, 6, 8), "ngf": 16, "arch": {"n_blocks": 3}, "size": 32},
        "spade": {"max_width": 8, "choices": (4, 6, 8), "ngf": 16, "arch": {"label_nc": 5, "n_up": 3}, "size": 32},
        "munit": {"max_width": 8, "choices": (4, 6, 8), "ngf": 16, "arch": {"input_nc": 3}, "size": 32}}


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    if request.param not in TINY:
        pytest.fail(f"family {request.param!r} has no TINY settings in this test module")
    return FAMILIES[request.param]


def _configs(space, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [space.sample(g) for _ in range(n)] + [space.smallest(), space.largest()]


def test_every_family_has_tiny_settings():
    assert set(TINY) == set(FAMILIES)


def test_extracted_subnet_equals_the_supernet_slice(family):
    t = TINY[family.name]
    torch.manual_seed(0)
    sup = init_weights(family.supernet(t["max_width"], **t["arch"])).eval()
    x = family.example_inputs(2, t["size"], **t["arch"])
    for config in _configs(family.space(t["choices"]), 8):
        sub = family.extract(sup, config).eval()
        assert sub.config == config
        with torch.no_grad():
            assert (sub(*x) - sup.set_config(config)(*x)).abs().max() < 1e-5, config
        assert not any("Elastic" in type(m).__name__ for m in sub.modules())  # a plain network


def test_closed_form_macs_equal_torchprofile(family):
    t = TINY[family.name]
    for size in (t["size"], 2 * t["size"]):
        for config in _configs(family.space(t["choices"]), 6, seed=1):
            net = family.student(config, **t["arch"])
            assert family.config_macs(config, size, **t["arch"]) == count_macs(
                net, inputs=family.example_inputs(1, size, **t["arch"])), (config, size)


def test_space_parses_encodes_and_names_the_allowed_widths(family):
    space = family.space(TINY[family.name]["choices"])
    for config in _configs(space, 5):
        assert space.contains(config) and "_".join(map(str, space.parse(config))) == config
    bad = "_".join(["5"] * len(space))
    with pytest.raises(ValueError, match=r"is not one of \[4, 6, 8\]"):
        space.parse(bad)
    with pytest.raises(ValueError, match=f"needs {len(space)}"):
        space.parse("4_4")
    assert space.size == len(list(space)) if space.size < 10_000 else True


def test_one_narrowed_differs_from_the_largest_in_one_entry_at_its_narrowest(family):
    space = family.space(TINY[family.name]["choices"])
    largest = space.parse(space.largest())
    narrowed = space.one_narrowed()
    assert list(narrowed) == list(space.entries)
    for i, config in enumerate(narrowed.values()):
        values = space.parse(config)
        differs = [j for j, (v, w) in enumerate(zip(values, largest)) if v != w]
        assert differs == [i] and values[i] == space.choices[i][0]


def test_taps_have_the_declared_shapes(family):
    t = TINY[family.name]
    nets = {"teacher": family.teacher(t["ngf"], **t["arch"]),
            "student": family.student(family.uniform(t["max_width"]), **t["arch"]),
            "supernet": family.supernet(t["max_width"], **t["arch"])}
    for name, net in nets.items():
        points, widths = family.distill_points(net), family.distill_widths(net)
        assert len(points) == len(widths) >= 1
        with FeatureTaps(net, points) as taps:
            net(*family.example_inputs(2, t["size"], **t["arch"]))
        assert [f.shape[1] for f in taps.features] == widths, name
    assert len(family.distill_points(nets["teacher"])) == len(family.distill_points(nets["student"]))


def test_channel_selection_returns_one_embedding_per_point(family):
    t = TINY[family.name]
    teacher = init_weights(family.teacher(t["ngf"], **t["arch"]))
    student = family.student(family.uniform(t["max_width"]), **t["arch"])
    selections = family.init_from_teacher(student, teacher)
    for kept, s_width, t_width in zip(selections, family.distill_widths(student), family.distill_widths(teacher),
                                      strict=True):
        assert len(kept) == s_width and len(set(kept.tolist())) == s_width and int(kept.max()) < t_width


def test_export_reloads_to_the_same_outputs(family, tmp_path):
    t = TINY[family.name]
    torch.manual_seed(0)
    sup = init_weights(family.supernet(t["max_width"], **t["arch"]))
    sub = family.extract(sup, family.space(t["choices"]).sample(torch.Generator().manual_seed(3))).eval()
    paths = export(sub, tmp_path, "best", t["size"], family.name, extra={"note": "x"})
    x = family.export_inputs(3, t["size"], **t["arch"])                  # another batch size than the export's example
    with torch.no_grad():
        expected = sub(*x)
        assert torch.equal(load_exported(tmp_path, "best")(*x), expected)
    for form, out in exported_outputs(paths, x).items():
        assert (out - expected).abs().max() < 1e-4, form


def test_a_failed_re_export_leaves_the_previous_set_whole(family, tmp_path, monkeypatch):
    t = TINY[family.name]
    torch.manual_seed(0)
    sup = init_weights(family.supernet(t["max_width"], **t["arch"]))
    sub = family.extract(sup, family.space(t["choices"]).smallest()).eval()
    paths = export(sub, tmp_path, "best", t["size"], family.name)
    before = {k: p.read_bytes() for k, p in paths.items()}

    def broken(*args, **kwargs):
        raise RuntimeError("the ONNX exporter failed")
    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="ONNX exporter failed"):
        export(init_weights(sub), tmp_path, "best", t["size"], family.name)     # other weights, a failing export
    assert {k: p.read_bytes() for k, p in paths.items()} == before
