"""Architecture search under a MAC budget (notebook 04): brute force for small spaces, evolution for large ones.

Both searches only need ``evaluate(config) -> float`` (lower is better, e.g. FID of the supernet's sub-network on the
held-out split), the family's :class:`~gclib.families.base.ConfigSpace` and ``macs(config) -> int``, the family's
closed-form MAC count (equal to torchprofile's, tested), so millions of candidates can be filtered without building a
network. Nothing here knows a family's layers.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Sequence

from .artifacts import atomic_write_json, set_aside
from .families.base import ConfigSpace, encode
from .progress import progress_bar

Evaluate = Callable[[str], float]
Macs = Callable[[str], int]


def check_budget(budget_macs: float, space: ConfigSpace, macs: Macs) -> None:
    """Raise a ``ValueError`` naming the smallest achievable MACs when no sub-network fits ``budget_macs``."""
    smallest = space.smallest()
    floor = macs(smallest)
    if budget_macs < floor:
        raise ValueError(f"a budget of {budget_macs / 1e9:.4f} GMACs is below the smallest sub-network of this space, "
                         f"{smallest} at {floor / 1e9:.4f} GMACs; choose a budget of at least {floor / 1e9:.4f} "
                         f"GMACs or smaller widths in the choice set")


def budget_plan(space: ConfigSpace, macs: Macs, widths: Sequence[int] = (), gmacs: Sequence[float] = ()
                ) -> dict[str, dict]:
    """The budgets of a search and the uniform rival each searched network must beat, by label.

    ``widths``: each budget is exactly the MACs of the uniform network of that width (every entry at it), and the
    rival is that network slimmed alike within this space (:meth:`ConfigSpace.slimmed`): the uniform one itself,
    sitting on the budget, unless some entry has widths of its own, which it then keeps (at or under the budget).
    ``gmacs``: absolute budgets in G MACs (the official per-dataset ones); the rival is the widest uniform
    sub-network within the budget. ``gmacs`` replaces ``widths`` when given."""
    plan = {}
    if gmacs:
        uniforms = sorted((macs(space.uniform(w)), space.uniform(w)) for w in space.uniform_widths())
        for g in gmacs:
            budget = g * 1e9
            check_budget(budget, space, macs)
            fitting = [config for m, config in uniforms if m <= budget]
            if not fitting:
                raise ValueError(f"no uniform sub-network fits {g} GMACs (the narrowest, {uniforms[0][1]}, needs "
                                 f"{uniforms[0][0] / 1e9:.3f}): nothing to compare the searched one with")
            plan[f"{g:g} GMACs"] = {"budget": budget, "rival": fitting[-1]}
        return plan
    for w in widths:
        every_entry = encode([w] * len(space.choices))
        rival = space.slimmed(w)
        if macs(rival) > macs(every_entry):
            raise ValueError(f"the budget of width {w} ({macs(every_entry) / 1e9:.4f} GMACs) is below {rival}, the "
                             f"narrowest this space slims to at that width: give search.budget_widths at least as "
                             f"wide as every width in supernet.entry_choices")
        plan[f"uniform {w}"] = {"budget": macs(every_entry), "rival": rival, "width": w}
    return plan


def brute_force(evaluate: Evaluate, space: ConfigSpace, macs: Macs, budget_macs: float, max_configs: int = 20_000,
                progress: bool = True) -> list[dict]:
    """Evaluate every config of ``space`` within the budget; rows ``{'config', 'macs', 'score'}``, best first.

    Refuses spaces with more than ``max_configs`` candidates under the budget (use :func:`evolution`)."""
    check_budget(budget_macs, space, macs)
    fits = []
    for config in space:
        m = macs(config)
        if m <= budget_macs:
            fits.append((config, m))
            if len(fits) > max_configs:
                raise ValueError(f"more than {max_configs} sub-networks fit the budget: too many to evaluate one by "
                                 f"one; use evolution() or a smaller choice set")
    rows = [{"config": c, "macs": m, "score": evaluate(c)}
            for c, m in progress_bar(fits, "brute force", disable=not progress)]
    return sorted(rows, key=lambda r: r["score"])


def evolution(evaluate: Evaluate, space: ConfigSpace, macs: Macs, budget_macs: float, population: int = 100,
              generations: int = 10, parent_fraction: float = 0.25, mutation_prob: float = 0.2, seed: int = 0,
              progress: bool = True, mutation_children: int = 0, crossover_children: int = 0,
              first_weights: Sequence[float] = ()) -> list[dict]:
    """Evolutionary search (Fast GAN Compression): keep the best ``parent_fraction`` of the population, add children
    by mutation (each entry resampled with ``mutation_prob``) and by crossover (each entry from one of two parents);
    any candidate over the budget is resampled. By default the children refill the population, half of each kind;
    ``mutation_children`` / ``crossover_children`` set their numbers instead (the official search: 25 parents, 50 + 50
    children). ``first_weights``: how likely each width (in choice order) is in the first, random generation.
    Scores are cached by config string, so a config is never evaluated twice. Returns every evaluated
    ``{'config', 'macs', 'score', 'generation'}``, best first."""
    check_budget(budget_macs, space, macs)
    rng = random.Random(seed)
    cache: dict[str, dict] = {}

    def sample_fitting(make: Callable[[], list[int]], tries: int = 1000) -> list[int]:
        for _ in range(tries):
            values = make()
            if macs(encode(values)) <= budget_macs:
                return values
        return space.parse(space.smallest())  # the budget is above the smallest network (checked), so this fits

    def random_config() -> list[int]:
        return [rng.choice(c) for c in space.choices]

    def first_config() -> list[int]:
        if not first_weights:
            return random_config()
        if any(len(c) != len(first_weights) for c in space.choices):
            raise ValueError(f"first_weights {tuple(first_weights)} needs one weight per width of every entry, "
                             f"the choices are {space.choices}")
        return [rng.choices(c, weights=first_weights)[0] for c in space.choices]

    def score(values: list[int], generation: int) -> dict:
        config = encode(values)
        if config not in cache:
            cache[config] = {"config": config, "macs": macs(config), "score": evaluate(config),
                             "generation": generation}
        return cache[config]

    current = [sample_fitting(first_config) for _ in range(population)]
    bar = progress_bar(range(generations), "evolution", disable=not progress)
    for generation in bar:
        ranked = sorted((score(v, generation) for v in current), key=lambda r: r["score"])
        bar.set_postfix(best=f"{ranked[0]['score']:.3f}", evaluated=len(cache))
        parents = [space.parse(r["config"]) for r in ranked[:max(2, int(parent_fraction * population))]]
        if mutation_children or crossover_children:
            n_mutate, n_children = mutation_children, mutation_children + crossover_children
        else:
            n_mutate, n_children = (population - len(parents)) // 2, population - len(parents)
        children = []
        for i in range(n_children):
            if i < n_mutate:
                p = rng.choice(parents)
                make = lambda p=p: [rng.choice(c) if rng.random() < mutation_prob else v
                                    for v, c in zip(p, space.choices)]
            else:
                a, b = rng.sample(parents, 2)
                make = lambda a=a, b=b: [rng.choice(pair) for pair in zip(a, b)]
            children.append(sample_fitting(make))
        current = parents + children
    for v in current:  # the last generation's children are evaluated too
        score(v, generations)
    return sorted(cache.values(), key=lambda r: r["score"])


# ----------------------------------------------------------------------------------------------------------------
# Scoring sub-networks straight from the supernet, and reading the results
# ----------------------------------------------------------------------------------------------------------------
class SupernetEvaluator:
    """``evaluate(config) -> score`` for the searches: the supernet's sub-network ``config`` (shared weights, no
    training) scored by ``scorer`` (e.g. FID/KID on the held-out split). Every result is cached by config string, so
    the searches under several budgets share their evaluations; :attr:`rows` lists them all.

    ``record``: a JSON file that keeps every result as it is scored, with ``about`` (what the scores depend on: the
    supernet's key, the scorer's settings), so a search stopped part-way resumes where it was: the evolution is
    seeded, and replays the same steps from the recorded scores. A record about something else is set aside."""

    def __init__(self, supernet, scorer: Callable, macs: Macs, metric: str = "fid", record=None,
                 about: dict | None = None):
        self.supernet, self.scorer, self.macs, self.metric = supernet, scorer, macs, metric
        self.results: dict[str, dict] = {}
        self.record, self.about = (Path(record) if record is not None else None), about or {}
        if self.record is not None and self.record.exists():
            kept = json.loads(self.record.read_text())
            if kept.get("about") == json.loads(json.dumps(self.about)):
                self.results = {row["config"]: row for row in kept["results"]}
            else:
                set_aside(self.record, "other-search")

    def __call__(self, config: str) -> float:
        if config not in self.results:
            active = self.supernet.config
            metrics = self.scorer(self.supernet.set_config(config))
            self.supernet.set_config(active)
            if self.metric not in metrics:
                raise ValueError(f"the search ranks by {self.metric!r} (search.metric), which this split's scorer does "
                                 f"not give: it gives {sorted(metrics)}. Distances to a target (l1, perceptual) need "
                                 f"a paired task; use 'fid' or 'kid' on an unpaired one")
            self.results[config] = {"config": config, "macs": self.macs(config), **metrics}
            if self.record is not None:
                rows = [{k: v if isinstance(v, str) else float(v) for k, v in row.items()}
                        for row in self.results.values()]
                atomic_write_json(self.record, {"about": self.about, "results": rows})
        return self.results[config][self.metric]

    @property
    def rows(self) -> list[dict]:
        return sorted(self.results.values(), key=lambda r: r["macs"])


def pareto_front(rows: list[dict], metric: str = "score") -> list[dict]:
    """The rows no other row beats on both MACs and ``metric`` (lower is better for both), by increasing MACs."""
    front, best = [], float("inf")
    for row in sorted(rows, key=lambda r: (r["macs"], r[metric])):
        if row[metric] < best:
            front.append(row)
            best = row[metric]
    return front


def best_under(rows: list[dict], budget_macs: float, metric: str = "score") -> dict:
    """The best row (lowest ``metric``) with MACs within ``budget_macs``; a clear error if none fits."""
    fitting = [r for r in rows if r["macs"] <= budget_macs]
    if not fitting:
        smallest = min(rows, key=lambda r: r["macs"]) if rows else None
        raise ValueError(f"no searched sub-network fits {budget_macs / 1e9:.4f} GMACs"
                         + (f"; the smallest searched one, {smallest['config']}, needs "
                            f"{smallest['macs'] / 1e9:.4f} GMACs" if smallest else ""))
    return min(fitting, key=lambda r: r[metric])
