import json
import random

import pytest

from gclib.families.resnet import FAST_CYCLEGAN_CHOICES, FAST_PIX2PIX_CHOICES, RESNET, MobileResnetGenerator
from gclib.metrics import count_macs
from gclib.search import SupernetEvaluator, best_under, brute_force, budget_plan, check_budget, evolution


def config_macs(config, size, n_blocks=9):
    return RESNET.config_macs(config, size, n_blocks)


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_macs_equal_torchprofile(seed):
    rng = random.Random(seed)
    config = "_".join(str(rng.choice(FAST_PIX2PIX_CHOICES)) for _ in range(8))
    blocks = 9 if seed % 2 else 6
    assert config_macs(config, 64, blocks) == count_macs(MobileResnetGenerator(config, n_blocks=blocks), 64)


def test_budget_below_the_smallest_network_names_it():
    with pytest.raises(ValueError, match=r"16_16_16_16_16_16_16_16 at 1\.4\d+ GMACs"):
        check_budget(1.0e9, RESNET.space(FAST_CYCLEGAN_CHOICES), lambda c: config_macs(c, 256))


def _toy_score(config: str) -> float:
    """A made-up quality: wider is better, but width in c2 (the trunk) matters most. Known optimum under a budget."""
    v = [int(x) for x in config.split("_")]
    return -(3 * v[2] + sum(v)) / 100


def test_brute_force_finds_the_best_config_under_the_budget():
    choices = (16, 24)
    budget = config_macs("24_16_24_16_16_16_16_16", 64)
    rows = brute_force(_toy_score, RESNET.space(choices), lambda c: config_macs(c, 64), budget, progress=False)
    assert all(r["macs"] <= budget for r in rows)
    assert rows[0]["score"] == min(r["score"] for r in rows)
    assert rows[0]["config"].split("_")[2] == "24"                   # the trunk is where the toy score pays most
    assert len(rows) == len({r["config"] for r in rows})


def test_evolution_respects_the_budget_caches_and_beats_random_sampling():
    budget = config_macs("32_32_32_32_32_32_32_32", 64)
    calls = []

    def counted(config):
        calls.append(config)
        return _toy_score(config)
    rows = evolution(counted, RESNET.space(FAST_CYCLEGAN_CHOICES), lambda c: config_macs(c, 64), budget,
                     population=20, generations=6, seed=0, progress=False)
    assert all(r["macs"] <= budget for r in rows)
    assert len(calls) == len(set(calls)) == len(rows)                # every config evaluated once
    first_generation = [r["score"] for r in rows if r["generation"] == 0]
    assert rows[0]["score"] < min(first_generation)                  # evolution improved on the random start


def test_evolution_with_the_official_children_counts_and_a_weighted_first_generation():
    """The official search: 25 parents, then 50 mutated and 50 crossed-over children per generation; horse2zebra's
    first generation favours narrow widths (weights 0.27 .. 0.13 for 16 .. 64)."""
    budget = config_macs("64_64_64_64_64_64_64_64", 64)                  # every config fits: only the sampler acts
    space, macs = RESNET.space(FAST_CYCLEGAN_CHOICES), (lambda c: config_macs(c, 64))
    generations = {}

    def record(config):
        return _toy_score(config)
    rows = evolution(record, space, macs, budget, population=100, generations=2, parent_fraction=0.25, seed=0,
                     progress=False, mutation_children=50, crossover_children=50,
                     first_weights=(0.27, 0.23, 0.20, 0.17, 0.13))
    for r in rows:
        generations.setdefault(r["generation"], []).append(r)
    assert len(generations[0]) == 100 and len(generations[1]) <= 100    # 50 + 50 children, new configs only
    widths = [int(w) for r in generations[0] for w in r["config"].split("_")]
    assert widths.count(16) > 1.5 * widths.count(64)                    # 0.27 vs 0.13 of 800 draws
    uniform = evolution(record, space, macs, budget, population=100, generations=1, seed=0, progress=False)
    plain = [int(w) for r in uniform if r["generation"] == 0 for w in r["config"].split("_")]
    assert abs(plain.count(16) - plain.count(64)) < 0.5 * plain.count(64)
    with pytest.raises(ValueError, match="one weight per width"):
        evolution(record, space, macs, budget, population=4, generations=1, progress=False, first_weights=(1, 2))


def _rows(n=40, seed=0):
    rng = random.Random(seed)
    return [{"config": f"c{i}", "macs": rng.randint(1, 20), "fid": rng.random() * 10, "kid": rng.random()}
            for i in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_pareto_front_is_exactly_the_undominated_rows(seed):
    from gclib.search import pareto_front
    rows = _rows(seed=seed)
    dominated = lambda r: any(o["macs"] <= r["macs"] and o["fid"] <= r["fid"] and
                              (o["macs"] < r["macs"] or o["fid"] < r["fid"]) for o in rows)
    front = pareto_front(rows, metric="fid")
    assert {r["config"] for r in front} == {r["config"] for r in rows if not dominated(r)}
    assert [r["macs"] for r in front] == sorted(r["macs"] for r in front)
    assert all(a["fid"] > b["fid"] for a, b in zip(front, front[1:]))      # costlier points must be better


def test_best_under_picks_the_best_fitting_row_and_names_the_smallest():
    rows = _rows()
    for budget in (5, 10, 20):
        best = best_under(rows, budget, metric="fid")
        assert best["macs"] <= budget
        assert best["fid"] == min(r["fid"] for r in rows if r["macs"] <= budget)
    cheapest = min(rows, key=lambda r: r["macs"])
    with pytest.raises(ValueError, match=cheapest["config"]):
        best_under(rows, cheapest["macs"] - 0.5, metric="fid")


def test_supernet_evaluator_scores_each_config_once_and_restores_the_active_one():
    from gclib.search import SupernetEvaluator
    from gclib.families.resnet import SuperMobileResnetGenerator
    sup = SuperMobileResnetGenerator(8, n_blocks=3).set_config("8_8_8_8_8_8_8_4")
    seen = []

    def scorer(G):
        seen.append(G.config)
        return {"fid": sum(int(v) for v in G.config.split("_")), "kid": 0.0}

    ev = SupernetEvaluator(sup, scorer, lambda c: config_macs(c, 32, 3), metric="fid")
    assert ev("4_4_4_4_4_4_4_4") == 32 and ev("4_4_4_4_4_4_4_4") == 32 and ev("8_4_4_4_4_4_4_4") == 36
    assert seen == ["4_4_4_4_4_4_4_4", "8_4_4_4_4_4_4_4"]                  # cached by config string
    assert sup.config == "8_8_8_8_8_8_8_4"
    assert [r["macs"] for r in ev.rows] == sorted(config_macs(c, 32, 3) for c in seen)


def test_the_search_ranks_by_its_metric_and_refuses_one_the_scorer_does_not_give():
    from gclib.search import SupernetEvaluator
    from gclib.families.resnet import SuperMobileResnetGenerator
    sup = SuperMobileResnetGenerator(8, n_blocks=3)
    macs = lambda c: config_macs(c, 32, 3)
    # a paired scorer: FID prefers wide networks, the perceptual distance narrow first entries (made-up scores)
    widths = lambda G: [int(v) for v in G.config.split("_")]
    paired = lambda G: {"fid": -sum(widths(G)), "kid": 0.0, "perceptual": float(widths(G)[0])}
    by = {m: SupernetEvaluator(sup, paired, macs, metric=m) for m in ("fid", "perceptual")}
    configs = ["4_8_8_8_8_8_8_4", "8_8_8_8_8_8_8_4", "8_8_8_8_8_8_8_8"]
    for ev in by.values():
        for c in configs:
            ev(c)
    assert best_under(by["fid"].rows, macs("8_8_8_8_8_8_8_8"), metric="fid")["config"] == "8_8_8_8_8_8_8_8"
    assert best_under(by["perceptual"].rows, macs("8_8_8_8_8_8_8_4"), metric="perceptual")["config"].startswith("4_")
    unpaired = SupernetEvaluator(sup, lambda G: {"fid": 1.0, "kid": 0.0}, macs, metric="perceptual")
    with pytest.raises(ValueError, match=r"'perceptual' \(search.metric\).*gives \['fid', 'kid'\].*paired task"):
        unpaired("4_4_4_4_4_4_4_4")


def test_budget_plans_by_width_or_by_absolute_macs_name_the_uniform_rival():
    space, macs = RESNET.space(FAST_CYCLEGAN_CHOICES), (lambda c: config_macs(c, 256))
    by_width = budget_plan(space, macs, widths=(16, 32))
    assert by_width["uniform 32"] == {"budget": macs("32_32_32_32_32_32_32_32"), "rival": "32_32_32_32_32_32_32_32",
                                      "width": 32}
    official = budget_plan(space, macs, widths=(16, 32), gmacs=(3.0,))     # horse2zebra's budget replaces widths
    assert list(official) == ["3 GMACs"] and official["3 GMACs"]["budget"] == 3e9
    rival = official["3 GMACs"]["rival"]
    assert macs(rival) <= 3e9 < min(macs(space.uniform(w)) for w in space.uniform_widths() if macs(space.uniform(w)) > 3e9)
    with pytest.raises(ValueError, match="below the smallest sub-network"):
        budget_plan(space, macs, gmacs=(0.5,))


def test_with_an_entry_of_its_own_the_rival_is_slimmed_alike_within_the_space():
    shared = RESNET.space([(6, 8, 12, 16)] * 8)
    pinned = RESNET.space([(6, 8, 12, 16)] * 7 + [(8,)])          # up2 keeps width 8 (supernet.entry_choices)
    macs = lambda c: config_macs(c, 32, 6)
    assert shared.slimmed(12) == shared.uniform(12) and shared.widths() == [6, 8, 12, 16]
    assert pinned.slimmed(12) == "12_12_12_12_12_12_12_8" and pinned.slimmed(6) == "6_6_6_6_6_6_6_8"
    assert pinned.uniform_widths() == [8] and pinned.widths() == [6, 8, 12, 16]
    plan = budget_plan(pinned, macs, widths=(8, 12))
    # the budget is the uniform network's, every entry at the width; the rival keeps up2 at 8, within the budget
    assert plan["uniform 8"] == {"budget": macs("8_8_8_8_8_8_8_8"), "rival": "8_8_8_8_8_8_8_8", "width": 8}
    assert plan["uniform 12"]["budget"] == macs("12_12_12_12_12_12_12_12") > macs(plan["uniform 12"]["rival"])
    assert budget_plan(shared, macs, widths=(8, 12)) == {
        f"uniform {w}": {"budget": macs(shared.uniform(w)), "rival": shared.uniform(w), "width": w} for w in (8, 12)}
    wide = RESNET.space([(6, 8, 12, 16)] * 7 + [(16,)])            # a pinned width above the budget's
    with pytest.raises(ValueError, match=r"below 6_6_6_6_6_6_6_16.*at least as wide as every width in "
                                         r"supernet.entry_choices"):
        budget_plan(wide, macs, widths=(6,))


def test_rank_scatter_reports_the_rank_correlations_and_draws_the_seed_range():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection
    from scipy.stats import spearmanr
    from gclib import plots
    shared, seeds = [1.0, 2.0, 3.0, 4.0], [[2.0, 4.0], [1.0, 2.0], [5.0, 6.0], [6.0, 9.0]]
    mean = [sum(s) / 2 for s in seeds]
    fig, rho, tau = plots.rank_scatter(shared, mean, ["a", "b", "c", "d"], seed_scores=seeds)
    assert rho == pytest.approx(spearmanr(shared, mean).statistic) and rho == pytest.approx(0.8)
    bars = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(bars) == 1 and [tuple(seg[:, 1]) for seg in bars[0].get_segments()] == [(min(s), max(s)) for s in seeds]
    assert "mean of 2 seeds" in fig.axes[0].get_ylabel()
    fig, _, _ = plots.rank_scatter(shared, mean, ["a", "b", "c", "d"])          # one seed: no bars
    assert not [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]


def test_the_shared_pipeline_searches_every_budget_and_picks_the_contenders():
    """gclib.pipeline (notebooks 04, 06, 07): the uniform rivals are scored, each budget's search stays under it,
    the main budget is the student's width, and the searched contender is the best scored under it."""
    from gclib import pipeline
    from gclib.presets import get_preset
    from gclib.search import SupernetEvaluator

    class Toy:                      # what SupernetEvaluator needs of a supernet: a settable config
        config = "16_16_16_16_16_16_16_16"

        def set_config(self, config):
            self.config = config
            return self
    cfg = get_preset("smoke", {"teacher.ngf": 32, "supernet.choices": (16, 24, 32),
                               "supernet.unpaired_choices": (16, 24, 32), "search.budget_widths": (16, 24),
                               "student.ngf": 24, "search.population": 8, "search.generations": 2})
    space = RESNET.space([(16, 24, 32)] * 8)
    macs = lambda c: config_macs(c, 64)
    evaluator = SupernetEvaluator(Toy(), lambda net: {"fid": _toy_score(net.config) + 1}, macs)
    found = pipeline.search(evaluator, space, macs, cfg, seed=0)
    assert {space.slimmed(w) for w in (16, 24, 32)} <= set(evaluator.results)
    assert set(found.results) == set(found.plan) == {"uniform 16", "uniform 24"}
    main = pipeline.main_budget(found.plan, cfg)
    assert main == "uniform 24"
    winner, rival = pipeline.contenders(found, main)
    under = [r for r in found.rows if r["macs"] <= found.budgets[main]]
    assert rival == "24_24_24_24_24_24_24_24" and evaluator.results[winner]["fid"] == min(r["fid"] for r in under)


class _ToySupernet:
    """What SupernetEvaluator needs of a supernet: the active config, and set_config returning the network."""
    config = "32_32_32_32_32_32_32_32"

    def set_config(self, config):
        self.config = config
        return config


def test_a_search_stopped_part_way_resumes_from_its_record_and_ends_where_an_uninterrupted_one_does(tmp_path):
    space, macs = RESNET.space(FAST_CYCLEGAN_CHOICES), (lambda c: config_macs(c, 64))
    budget = config_macs("32_32_32_32_32_32_32_32", 64)
    calls = []

    def scorer(config):
        calls.append(config)
        if len(calls) == stop_after:
            raise KeyboardInterrupt("stopped")
        return {"fid": _toy_score(config) + 10, "kid": 1.0}

    def search(record, about):
        evaluator = SupernetEvaluator(_ToySupernet(), scorer, macs, "fid", record, about)
        return evolution(evaluator, space, macs, budget, population=12, generations=4, seed=3, progress=False)

    stop_after = 0
    whole = search(None, None)
    n_whole, about = len(calls), {"supernet": "abc123", "metric": "fid"}
    calls.clear()
    stop_after = n_whole // 2
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "search.json", about)
    assert len(json.loads((tmp_path / "search.json").read_text())["results"]) == stop_after - 1
    calls.clear()
    stop_after = 0
    assert search(tmp_path / "search.json", about) == whole                   # the same rows, in the same order
    assert len(calls) == n_whole - (n_whole // 2 - 1)                         # only what was not scored yet
    calls.clear()
    search(tmp_path / "search.json", {**about, "supernet": "def456"})         # another supernet: scored anew
    assert len(calls) == n_whole and list(tmp_path.glob("search.other-search-*.json"))
