"""Architecture search under a MAC budget (notebook 04): brute force for small spaces, evolution for large ones.

Both searches only need ``evaluate(config) -> float`` (lower is better, e.g. KID of the supernet's sub-network on the
held-out split) and the MACs of a config, computed here in closed form so millions of candidates can be filtered
without building a network; :func:`config_macs` equals torchprofile's count (tested).
"""
from __future__ import annotations

import itertools
import random
from typing import Callable

from .mobile import CONFIG_LEN, config_widths, encode_config, parse_config

Evaluate = Callable[[str], float]


def config_macs(config: str | list[int], image_size: int = 256, n_blocks: int = 9) -> int:
    """MACs of the mobile sub-network ``config`` at batch 1, torchprofile's convention (notebook 01):
    each conv costs ``H_out W_out C_out C_in/groups k^2``, transposed convs counted on their output."""
    w = config_widths(parse_config(config))
    full, half, quarter = image_size ** 2, (image_size // 2) ** 2, (image_size // 4) ** 2
    trunk, inners = w["trunk"], [w["inner1"], w["inner2"], w["inner3"]]
    macs = full * w["stem"] * 3 * 49                                   # 7x7 stem, 3 -> c0
    macs += half * w["down1"] * w["stem"] * 9                          # 3x3 stride 2
    macs += quarter * trunk * w["down1"] * 9                           # 3x3 stride 2 into the trunk
    for i in range(n_blocks):                                          # two separable convs per block
        inner = inners[min(2, i * 3 // n_blocks)]
        macs += quarter * (trunk * 9 + inner * trunk)                  # depthwise 3x3 + pointwise trunk -> inner
        macs += quarter * (inner * 9 + trunk * inner)                  # depthwise 3x3 + pointwise inner -> trunk
    macs += half * w["up1"] * trunk * 9                                # transposed 3x3, counted on its output
    macs += full * w["up2"] * w["up1"] * 9
    macs += full * 3 * w["up2"] * 49                                   # 7x7 to RGB
    return macs


def check_budget(budget_macs: float, choices: tuple[int, ...], image_size: int, n_blocks: int = 9) -> None:
    """Raise a ``ValueError`` naming the smallest achievable MACs when no sub-network fits ``budget_macs``."""
    smallest = encode_config([min(choices)] * CONFIG_LEN)
    floor = config_macs(smallest, image_size, n_blocks)
    if budget_macs < floor:
        raise ValueError(f"a budget of {budget_macs / 1e9:.4f} GMACs is below the smallest sub-network of this space, "
                         f"{smallest} at {floor / 1e9:.4f} GMACs ({image_size}x{image_size}); choose a budget of at "
                         f"least {floor / 1e9:.4f} GMACs or smaller widths in the choice set")


def brute_force(evaluate: Evaluate, choices: tuple[int, ...], budget_macs: float, image_size: int,
                n_blocks: int = 9, max_configs: int = 20_000, progress: bool = True) -> list[dict]:
    """Evaluate every config of ``choices``^8 within the budget; rows ``{'config', 'macs', 'score'}``, best first.

    Refuses spaces with more than ``max_configs`` candidates under the budget (use :func:`evolution`)."""
    from tqdm.auto import tqdm
    check_budget(budget_macs, choices, image_size, n_blocks)
    fits = []
    for values in itertools.product(sorted(choices), repeat=CONFIG_LEN):
        macs = config_macs(list(values), image_size, n_blocks)
        if macs <= budget_macs:
            fits.append((encode_config(list(values)), macs))
            if len(fits) > max_configs:
                raise ValueError(f"more than {max_configs} sub-networks fit the budget: too many to evaluate one by "
                                 f"one; use evolution() or a smaller choice set")
    rows = [{"config": c, "macs": m, "score": evaluate(c)} for c, m in tqdm(fits, desc="brute force",
                                                                            disable=not progress)]
    return sorted(rows, key=lambda r: r["score"])


def evolution(evaluate: Evaluate, choices: tuple[int, ...], budget_macs: float, image_size: int,
              n_blocks: int = 9, population: int = 100, generations: int = 10, parent_fraction: float = 0.25,
              mutation_prob: float = 0.2, seed: int = 0, progress: bool = True) -> list[dict]:
    """Evolutionary search (Fast GAN Compression): keep the best ``parent_fraction`` of the population, fill the rest
    half by mutation (each width resampled with ``mutation_prob``) and half by crossover (each width from one of two
    parents); any candidate over the budget is resampled. Scores are cached by config string, so a config is never
    evaluated twice. Returns every evaluated ``{'config', 'macs', 'score', 'generation'}``, best first."""
    from tqdm.auto import tqdm
    check_budget(budget_macs, choices, image_size, n_blocks)
    rng = random.Random(seed)
    choices = tuple(sorted(choices))
    cache: dict[str, dict] = {}

    def fits(values: list[int]) -> bool:
        return config_macs(values, image_size, n_blocks) <= budget_macs

    def sample_fitting(make: Callable[[], list[int]], tries: int = 1000) -> list[int]:
        for _ in range(tries):
            values = make()
            if fits(values):
                return values
        return [min(choices)] * CONFIG_LEN  # the budget is above the smallest network (checked), so this fits

    def random_config() -> list[int]:
        return [rng.choice(choices) for _ in range(CONFIG_LEN)]

    def score(values: list[int], generation: int) -> dict:
        config = encode_config(values)
        if config not in cache:
            cache[config] = {"config": config, "macs": config_macs(values, image_size, n_blocks),
                             "score": evaluate(config), "generation": generation}
        return cache[config]

    current = [sample_fitting(random_config) for _ in range(population)]
    bar = tqdm(range(generations), desc="evolution", disable=not progress)
    for generation in bar:
        ranked = sorted((score(v, generation) for v in current), key=lambda r: r["score"])
        bar.set_postfix(best=f"{ranked[0]['score']:.3f}", evaluated=len(cache))
        parents = [parse_config(r["config"]) for r in ranked[:max(2, int(parent_fraction * population))]]
        n_mutate = (population - len(parents)) // 2
        children = []
        for i in range(population - len(parents)):
            if i < n_mutate:
                p = rng.choice(parents)
                make = lambda p=p: [rng.choice(choices) if rng.random() < mutation_prob else v for v in p]
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
    the searches under several budgets share their evaluations; :attr:`rows` lists them all."""

    def __init__(self, supernet, scorer: Callable, key: str = "fid", image_size: int = 256):
        self.supernet, self.scorer, self.key, self.image_size = supernet, scorer, key, image_size
        self.results: dict[str, dict] = {}

    def __call__(self, config: str | list[int]) -> float:
        config = encode_config(parse_config(config))
        if config not in self.results:
            active = self.supernet.config
            metrics = self.scorer(self.supernet.set_config(config))
            self.supernet.set_config(active)
            self.results[config] = {"config": config, "macs": config_macs(config, self.image_size,
                                                                          self.supernet.n_blocks), **metrics}
        return self.results[config][self.key]

    @property
    def rows(self) -> list[dict]:
        return sorted(self.results.values(), key=lambda r: r["macs"])


def pareto_front(rows: list[dict], key: str = "score") -> list[dict]:
    """The rows no other row beats on both MACs and ``key`` (lower is better for both), by increasing MACs."""
    front, best = [], float("inf")
    for row in sorted(rows, key=lambda r: (r["macs"], r[key])):
        if row[key] < best:
            front.append(row)
            best = row[key]
    return front


def best_under(rows: list[dict], budget_macs: float, key: str = "score") -> dict:
    """The best row (lowest ``key``) with MACs within ``budget_macs``; a clear error if none fits."""
    fitting = [r for r in rows if r["macs"] <= budget_macs]
    if not fitting:
        smallest = min(rows, key=lambda r: r["macs"]) if rows else None
        raise ValueError(f"no searched sub-network fits {budget_macs / 1e9:.4f} GMACs"
                         + (f"; the smallest searched one, {smallest['config']}, needs "
                            f"{smallest['macs'] / 1e9:.4f} GMACs" if smallest else ""))
    return min(fitting, key=lambda r: r[key])
