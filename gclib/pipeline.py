"""The search-and-compare pipeline notebooks 04 (pix2pix, CycleGAN), 06 (GauGAN) and 07 (MUNIT) share.

1. :func:`search`: score every uniformly slimmed sub-network, then evolve under each of the preset's budgets, all
   through one :class:`~gclib.search.SupernetEvaluator` (its cache makes a sub-network scored once, whichever
   budget's search meets it).
2. :func:`main_budget`: the budget the notebook compares at: the one sitting on notebook 02's student (its width),
   else the middle one.
3. :func:`contenders`: under a budget, the searched sub-network and the uniform rival it must beat.
4. :func:`fine_tune`: both fine-tuned from the supernet with the same recipe and seeds, so any difference after
   fine-tuning is the architecture's.
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
    key, lower is better) and the uniform rival of :func:`~gclib.search.budget_plan`."""
    winner = best_under(found.rows, found.plan[label]["budget"], key=found.evaluator.key)["config"]
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
