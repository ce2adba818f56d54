"""Reference scores of the 26 Atari 100k games, for human-normalized scores (HNS).

    HNS = (score - random) / (human - random)

The random and human scores are the ones the Atari 100k literature normalizes with (random agent
and human tester of Mnih et al. 2015 / Badia et al. 2020); this table is copied from the files
that publish them, identical in all three (checked number by number):

* IRIS (Micheli et al. 2023): ``eloialonso/iris``, ``results/data/RANDOM.json`` and
  ``results/data/HUMAN.json`` (commit 24326aa);
* rliable (Agarwal et al. 2021): ``google-research/rliable``, ``deep_rl_precipice_colab.ipynb``,
  "Score data for Human and random agent";
* Dopamine's Atari 100k lab: ``google/dopamine``, ``dopamine/labs/atari_100k/normalization_utils.py``.

Published results on these 26 games (quoted for scale, measured by their authors on their
machines, never a same-machine comparison with ours) live in :data:`PUBLISHED_MEAN_HNS`.
"""

from __future__ import annotations

# game id (worldsim's snake case, as ale-py names the ROMs): (random, human)
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7),
    "amidar": (5.8, 1719.5),
    "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3),
    "bank_heist": (14.2, 753.1),
    "battle_zone": (2360.0, 37187.5),
    "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5),
    "chopper_command": (811.0, 7387.8),
    "crazy_climber": (10780.5, 35829.4),
    "demon_attack": (152.1, 1971.0),
    "freeway": (0.0, 29.6),
    "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5),
    "hero": (1027.0, 30826.4),
    "jamesbond": (29.0, 302.8),
    "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5),
    "kung_fu_master": (258.5, 22736.3),
    "ms_pacman": (307.3, 6951.6),
    "pong": (-20.7, 14.6),
    "private_eye": (24.9, 69571.3),
    "qbert": (163.9, 13455.0),
    "road_runner": (11.5, 7845.0),
    "seaquest": (68.4, 42054.7),
    "up_n_down": (533.4, 11693.2),
}

ATARI_100K_GAMES = tuple(REFERENCE_SCORES)

# Mean HNS over the 26 games as published (DIAMOND: Alonso et al. 2024, mean of 5 seeds per game in
# eloialonso/diamond results/data/DIAMOND.json; IRIS: results/data/IRIS.json; EDELINE as its
# authors report it). Measured by their authors, not by us.
PUBLISHED_MEAN_HNS: dict[str, float] = {"DIAMOND": 1.46, "IRIS": 1.046, "EDELINE": 1.87}


def human_normalized_score(game: str, score: float) -> float:
    """(score − random) / (human − random) for one of the 26 Atari 100k games."""
    if game not in REFERENCE_SCORES:
        raise ValueError(f"No human / random reference score for {game!r}: the Atari 100k games are "
                         f"{', '.join(ATARI_100K_GAMES)}. Scores of other games are reported raw.")
    random, human = REFERENCE_SCORES[game]
    return (score - random) / (human - random)
