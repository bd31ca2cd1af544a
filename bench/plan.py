"""Who does what in a run, drawn from the seed: the active accounts (logged in, warmed, driving
the workload) and the fan-out lag probes (an author and a few of their warm followers)."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from bench.config import BenchConfig
from bench.graphgen import Dataset
from bench.probes import LagProbe


@dataclass(frozen=True)
class Plan:
    # (user_id, handle) of the active accounts.
    accounts: tuple[tuple[int, str], ...]
    probes: tuple[LagProbe, ...]
    # Every user ID: the followees `follow` picks from.
    population: tuple[int, ...]


def make_plan(dataset: Dataset, config: BenchConfig) -> Plan:
    rng = random.Random(config.seed + 1)
    celebrities = dataset.celebrities
    active = sorted(rng.sample(range(celebrities, dataset.users), config.active_users))
    active_set = set(active)
    warm_followers: dict[int, list[int]] = defaultdict(list)
    for follower, followee in zip(dataset.follower_idx, dataset.followee_idx, strict=True):
        if follower in active_set:
            warm_followers[followee].append(follower)

    ordinary = sorted(
        author for author, found in warm_followers.items() if author >= celebrities and len(found) >= 2
    )
    ordinary_authors = rng.sample(ordinary, min(config.lag_probes_ordinary, len(ordinary)))
    celebrity_count = config.lag_probes_celebrity if celebrities else 0
    ids = dataset.user_ids

    def probe(author: int, celebrity: bool) -> LagProbe:
        found = warm_followers[author]
        picked = rng.sample(found, min(config.lag_followers, len(found)))
        return LagProbe(ids[author], celebrity, tuple(ids[follower] for follower in picked))

    probes: list[LagProbe] = []
    for turn in range(max(len(ordinary_authors), celebrity_count)):
        if turn < len(ordinary_authors):
            probes.append(probe(ordinary_authors[turn], False))
        if turn < celebrity_count and warm_followers[turn % celebrities]:
            probes.append(probe(turn % celebrities, True))
    return Plan(
        accounts=tuple((ids[index], dataset.handles[index]) for index in active),
        probes=tuple(probes),
        population=tuple(ids),
    )
