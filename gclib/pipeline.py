"""The search-and-compare pipeline notebooks 04 (pix2pix, CycleGAN), 06 (GauGAN) and 07 (MUNIT) share.

1. :func:`search`: score every uniformly slimmed sub-network, then evolve under each of the preset's budgets, all
   through one :class:`~gclib.search.SupernetEvaluator` (its cache makes a sub-network scored once, whichever
   budget's search meets it).
2. :func:`main_budget`: the budget the notebook compares at: the one sitting on notebook 02's student (its width),
   else the middle one.
3. :func:`contenders`: under a budget, the searched sub-network and the uniform rival it must beat.
4. :func:`fine_tune`: both fine-tuned from the supernet with the same recipe and seeds, so any difference after
   fine-tuning is the architecture's.
5. :func:`frontier`: steps 3 and 4 at every budget, scored on the test split before and after fine-tuning; and
   :func:`teacher_band`, :func:`at_teacher_quality`, :func:`largest_reduction`: what the frontier says.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .search import SupernetEvaluator, best_under, budget_plan, evolution


@dataclass
class Search:
    plan: dict          # label -> {"budget": MACs, "rival": the uniform config, "width": ...}
    results: dict       # label -> what evolution returned under that budget
    evaluator: SupernetEvaluator

    @property
    def budgets(self) -> dict[str, float]:
        return {label: p["budget"] for label, p in self.plan.items()}

    @property
    def rows(self) -> list[dict]:
        """Every sub-network scored, one row each (config, MACs, scores)."""
        return self.evaluator.rows


def search(evaluator: SupernetEvaluator, space, macs: Callable[[str], float], preset, seed: int) -> Search:
    """Score every uniformly slimmed sub-network of ``space`` (the rivals), then run the preset's evolution under
    each budget of ``preset.search`` (``budget_widths`` or ``budget_gmacs``)."""
    s = preset.search
    plan = budget_plan(space, macs, s.budget_widths, s.budget_gmacs)
    for w in space.widths():   # every layer slimmed alike; an entry with widths of its own keeps one of them
        evaluator(space.slimmed(w))
    results = {label: evolution(evaluator, space, macs, p["budget"], population=s.population,
                                generations=s.generations, parent_fraction=s.parent_fraction,
                                mutation_prob=s.mutation_prob, seed=seed, mutation_children=s.mutation_children,
                                crossover_children=s.crossover_children, first_weights=s.first_weights)
               for label, p in plan.items()}
    return Search(plan, results, evaluator)


def main_budget(plan: dict, preset) -> str:
    """The label of the budget the notebook fine-tunes and compares at: the one whose width is notebook 02's
    student's (``student.ngf``), else the middle one."""
    labels = list(plan)
    return next((label for label in labels if plan[label].get("width") == preset.student.ngf),
                labels[len(labels) // 2])


def contenders(found: Search, label: str) -> tuple[str, str]:
    """(searched, uniform) under the budget ``label``: the best scored sub-network within it (by the evaluator's
    metric, lower is better) and the uniform rival of :func:`~gclib.search.budget_plan`."""
    winner = best_under(found.rows, found.plan[label]["budget"], metric=found.evaluator.metric)["config"]
    return winner, found.plan[label]["rival"]


def fine_tune(preset, data, teacher, supernet, configs: dict[str, str], runs_dir, seeds: list[int], device,
              cache=None, progress: bool = True) -> dict:
    """``{(name, seed): Trained}``: each of ``configs`` ({name: config}) fine-tuned from ``supernet`` for
    ``search.finetune_steps`` steps with the paper's distillation recipe, once per seed (load-or-train)."""
    from . import stages
    return {(name, s): stages.subnet(preset, data, teacher, config, runs_dir, preset.search.finetune_steps,
                                     start="supernet", supernet=supernet, seed=s, device=device, cache=cache,
                                     progress=progress)
            for name, config in configs.items() for s in seeds}


PAIRED_GAIN_METRICS = ("fid", "kid", "l1", "perceptual", "psnr")   # the scores with a paired interval


def frontier(preset, data, teacher, supernet, found: Search, runs_dir, seeds: list[int], device, test_scorer,
             heldout_scorer, macs: Callable[[str], float], cache=None, progress: bool = True,
             calibration=None) -> list[dict]:
    """The compression frontier: under every budget of ``found``, the searched sub-network and its uniform rival,
    each scored on the test split with the supernet's shared weights (``before``) and after fine-tuning once per
    seed (``after``: {seed: scores}); one row per (budget, role). A budget whose best is the uniform network is
    fine-tuned once and gets a single row (role ``"searched = uniform"``). ``gain``: the searched network's
    held-out gain over the uniform one after fine-tuning with the first seed, with its paired interval, on the
    search's metric (FID where the search ranks by a score without one, as GauGAN's mIoU), where the two differ.
    ``calibration``: training inputs that re-estimate a network's BatchNorm statistics before it is scored
    (GauGAN's, as notebook 06 does; the other families' norms need none)."""
    from .families import get_family
    family = get_family(preset.family)
    ready = (lambda net: family.calibrate(net, calibration)) if calibration is not None else (lambda net: net)
    metric = found.evaluator.metric if found.evaluator.metric in PAIRED_GAIN_METRICS else "fid"
    rows = []
    for label, plan in found.plan.items():
        searched, uniform = contenders(found, label)
        roles = {"searched": searched, "uniform": uniform} if searched != uniform else {"searched = uniform": uniform}
        tuned = fine_tune(preset, data, teacher, supernet, roles, runs_dir, seeds, device, cache, progress)
        nets = {key: ready(run.net) for key, run in tuned.items()}
        gain = None
        if searched != uniform:
            gain = heldout_scorer.paired_gain(nets["uniform", seeds[0]], nets["searched", seeds[0]],
                                              resamples=100, only=(metric,))[metric]
        for role, config in roles.items():
            shared = ready(family.extract(supernet.net, config).to(device))
            rows.append({"budget": label, "budget macs": plan["budget"], "role": role, "config": config,
                         "macs": macs(config), "before": test_scorer(shared),
                         "after": {s: test_scorer(nets[role, s]) for s in seeds},
                         "gain": gain, "gain metric": metric,
                         "minutes": sum(tuned[role, s].artifact.training_minutes for s in seeds)})
    return rows


def teacher_band(teacher_scores: list[dict], metric: str) -> tuple[float, float]:
    """The teacher's band on ``metric`` (best, worst): the spread of its seeds; a teacher of one seed, its 95%
    bootstrap interval (the only spread it has)."""
    from .report import LOWER_IS_BETTER
    if len(teacher_scores) > 1:
        values = [t[metric] for t in teacher_scores]
    else:
        values = [teacher_scores[0].get(f"{metric} low", teacher_scores[0][metric]),
                  teacher_scores[0].get(f"{metric} high", teacher_scores[0][metric])]
    return (min(values), max(values)) if LOWER_IS_BETTER[metric] else (max(values), min(values))


def at_teacher_quality(row: dict, teacher_scores: list[dict], metrics: list[str]) -> dict[str, bool]:
    """{metric: whether the row's mean over its fine-tuning seeds is no worse than the worse end of the teacher's
    band} (:func:`teacher_band`)."""
    from .report import within_teacher_spread
    return {m: bool(within_teacher_spread([s[m] for s in row["after"].values()], teacher_band(teacher_scores, m), m))
            for m in metrics}


def largest_reduction(rows: list[dict], teacher_scores: list[dict], teacher_macs: float, metrics: list[str],
                      roles: tuple[str, ...] = ("searched", "searched = uniform")) -> dict | None:
    """The row of ``roles`` with the largest MAC reduction whose every metric is at teacher quality (None: no
    budget reaches it), with ``reduction`` = teacher MACs / its MACs."""
    held = [r for r in rows if r["role"] in roles and all(at_teacher_quality(r, teacher_scores, metrics).values())]
    if not held:
        return None
    best = min(held, key=lambda r: r["macs"])
    return {**best, "reduction": teacher_macs / best["macs"]}
