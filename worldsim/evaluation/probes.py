"""Probe suites for 3D consistency and object permanence on MiniWorld, played on the real env.

A **probe** is a fixed action sequence from a seeded MiniWorld episode: ``prefix_actions`` lead from
``reset(seed=seed)`` to the last real context frame (frame index 0 of the probe's timeline; the
frames before it have negative indices), then ``actions`` are what a world model is asked to dream
(frame ``t >= 1`` follows ``actions[t - 1]``). ``returns`` lists ``(earlier, later)`` frame indices
at which the agent has the *same pose* (position and heading): the loop closures that are scored.

Every prefix ends with a left pan of at least ``context_frames - 1`` turns, so any model whose
context is at most ``context_frames`` frames gets real frames of a moving camera. Kinds
(``N`` = turns in a full circle, 24 with MiniWorld's 15° ``turn_step``; ``L``/``R``/``F`` = turn
left, turn right, move forward; each loop is played ``repeats`` times, the context ending after its
first action so that the last context frame is never the pose returned to):

* ``turn_back`` (``j``): ``L^j R^j``, loop length ``2j``;
* ``full_turn``: ``L^N``, loop length ``N``;
* ``out_and_back`` (``n``): ``F^n L^(N/2) F^n L^(N/2)``, loop length ``2n + N``; drawn again (another
  start heading, then another episode) when a wall or the box blocks a step or ends the episode;
* ``permanence`` (``k``): the context pans left across a coloured object and ``away_turns`` turns
  past it (so the object is out of view at frame 0), then ``k - 1`` dwell steps ``L R L ...`` keep
  it out of view, then ``R`` turns face it again. Frames ``0 .. k-1`` must show no pixel of its
  colour; the facing frame and the return frame must show it.
* ``walk_by`` (``m``; tasks with an occluding wall, ``MiniWorld-WallWalk-v0``): the context pans to
  a heading from which the object shows (through the wall's gap), then walks forward ``j`` steps
  until the wall hides it (frame 0); the dream walks ``m`` steps on and ``m + j`` back (``B``), to
  the facing pose. In frames ``0 .. 2m`` the object must stay inside the field of view and be drawn
  in no pixel (the env renders the view again without it: a wall hides it, not a turn); the facing
  and return frames must show it.

Every probe is validated on the real env with its ground truth (``info["state/..."]``), and a probe
set is a pure function of (``PROBE_SUITE_VERSION``, ``SuiteConfig``, ``seed``, ``count``): episode
seeds come from ``numpy.random.default_rng([seed, scene, probe, attempt])``, worlds from the env's
own seeded generator. **Version rule**: any change that changes a probe definition (generators,
``SuiteConfig`` defaults, validation, the mask rule) bumps ``PROBE_SUITE_VERSION`` and records the
new fingerprint of ``make_suite(0, 1)`` in ``SUITE_FINGERPRINTS`` (tests/test_consistency.py fails
until both are updated). See docs/consistency.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PROBE_SUITE_VERSION = "2"  # 2: + walk_by (WallWalk); OneRoom suites hold the same probes as in 1 (tested)
SUITE_FINGERPRINTS = {"1": "74b453101fa0ed99", "2": "add4444a294fc078"}  # fingerprint of make_suite(seed=0, count=1) per version

TURN_DEGREES = 15.0  # MiniWorld's DEFAULT_PARAMS turn_step (forward_step 0.15 m, drift 0); fixed without domain_rand
POSITION_TOLERANCE = 1e-4  # metres: "same pose" means |Δ(x, z)| and |Δ heading| below these
HEADING_TOLERANCE = 1e-4  # radians
# Colour masks (colour_mask): a pixel p in [0, 1]^3 belongs to an object of colour c when it lies within
# MASK_TOLERANCE (Euclidean) of the shaded colour s·c, s = clip(<p, c> / <c, c>, MASK_MIN_SHADE, 1 / max c).
MASK_TOLERANCE = 0.2
MASK_MIN_SHADE = 0.3
MIN_VISIBLE_SHARE = 0.002  # a frame "shows" the object with at least this share of its pixels (8 of 64×64)
# Colours whose masks were calibrated against concrete, brick and asphalt walls (docs/consistency.md);
# grey is the walls' own colour, purple and yellow overlap shaded brick and floor.
TARGET_COLORS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
KINDS = ("turn_back", "full_turn", "out_and_back", "permanence", "walk_by")
OCCLUDED_KINDS = ("permanence", "walk_by")  # probes scored by the target's colour mask at the return
WALK_BY_TASKS = ("MiniWorld-WallWalk-v0",)  # tasks whose default suite has walk_by probes (and no permanence)


@dataclass
class SuiteConfig:
    task: str = "MiniWorld-OneRoom-v0"
    frame_size: int = 64
    context_frames: int = 16  # real frames every prefix ends with: models with a context up to this fit
    turn_back: tuple[int, ...] = (1, 2, 4, 8, 12)  # j: turns out (and back)
    full_turn: bool = True
    out_and_back: tuple[int, ...] = (1, 2, 4, 8)  # n: forward steps out (and back)
    permanence: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # k: frames the object is out of view
    walk_by: tuple[int, ...] = ()  # m: steps walked on after a wall hides the object (2m + 1 frames hidden)
    repeats: int = 2  # loops played twice: the second return is scored against the dream's first
    away_turns: int = 6  # permanence: turns past the object before frame 0 (90°)
    max_attempts: int = 24

    @classmethod
    def for_task(cls, task: str, **kwargs: Any) -> "SuiteConfig":
        """The default suite of a task: walk_by probes (1, 2, 4) instead of permanence where a wall
        hides the object (an object across the wall seldom shows from the start position)."""
        if task in WALK_BY_TASKS:
            kwargs = {"walk_by": (1, 2, 4), "permanence": (), **kwargs}
        return cls(task=task, **kwargs)


@dataclass(frozen=True)
class Probe:
    kind: str
    task: str
    seed: int  # episode seed: env.reset(seed=seed)
    frame_size: int
    prefix_actions: tuple[int, ...]
    actions: tuple[int, ...]
    returns: tuple[tuple[int, int], ...]  # (earlier, later) frame indices of one pose; <= 0 are real context
    params: dict[str, Any] = field(default_factory=dict)  # loop_length, j / n / k, target colour, ...

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["returns"] = [list(r) for r in self.returns]
        return d


@dataclass
class PlayedProbe:
    """A probe with what the real env showed: frames and poses from the reset frame on."""

    probe: Probe
    frames: np.ndarray  # (1 + len(prefix) + T, h, w, 3) uint8
    poses: np.ndarray  # (same, 3) float64: x, z, heading (rad)
    target_pixels: np.ndarray | None = None  # (same,) pixels of the target's colour (permanence only)

    @property
    def origin(self) -> int:
        """Array index of frame 0 (the last context frame)."""
        return len(self.probe.prefix_actions)

    def frame(self, t: int) -> np.ndarray:
        return self.frames[self.origin + t]

    def pose(self, t: int) -> np.ndarray:
        return self.poses[self.origin + t]

    @property
    def all_actions(self) -> np.ndarray:
        return np.asarray(self.probe.prefix_actions + self.probe.actions, dtype=np.int64)


@dataclass
class ProbeSuite:
    seed: int
    count: int
    config: SuiteConfig
    probes: list[PlayedProbe]
    version: str = PROBE_SUITE_VERSION

    @property
    def fingerprint(self) -> str:
        return suite_fingerprint([p.probe for p in self.probes], self.version)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "fingerprint": self.fingerprint, "seed": self.seed, "count": self.count,
                "config": asdict(self.config), "num_probes": len(self.probes),
                "mask": {"tolerance": MASK_TOLERANCE, "min_shade": MASK_MIN_SHADE, "min_visible_share": MIN_VISIBLE_SHARE}}


def suite_fingerprint(probes: list[Probe], version: str = PROBE_SUITE_VERSION) -> str:
    text = json.dumps({"version": version, "probes": [p.to_dict() for p in probes]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- colour masks
def colour_mask(frames: np.ndarray, color: np.ndarray | tuple[float, ...], tolerance: float = MASK_TOLERANCE,
                min_shade: float = MASK_MIN_SHADE) -> np.ndarray:
    """uint8 frames (..., h, w, 3) -> bool (..., h, w): pixels of an object of RGB ``color`` (in [0, 1])
    under MiniWorld's lighting, which scales a colour by the shade s (ambient 0.45 + diffuse)."""
    p = np.asarray(frames, dtype=np.float32) / 255.0
    c = np.asarray(color, dtype=np.float32)
    s = np.clip((p @ c) / float(c @ c), min_shade, 1.0 / float(c.max()))
    return np.linalg.norm(p - s[..., None] * c, axis=-1) <= tolerance


def min_visible_pixels(frame_size: int) -> int:
    return max(1, math.ceil(MIN_VISIBLE_SHARE * frame_size * frame_size))


# ----------------------------------------------------------------------------- playing on the real env
def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def play(env, seed: int, actions: list[int] | tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, dict, bool]:
    """reset(seed) then the actions: frames (1+T, h, w, 3), poses (1+T, 3), the reset info, and whether
    the episode ran through (no step ended it)."""
    obs, info0 = env.reset(seed=int(seed))
    frames, poses, ok = [obs], [_pose(info0)], True
    for a in actions:
        obs, _, terminated, truncated, info = env.step(int(a))
        frames.append(obs)
        poses.append(_pose(info))
        ok = ok and not (terminated or truncated)
    return np.stack(frames), np.stack(poses), info0, ok


def _pose(info: dict) -> np.ndarray:
    pos = info["state/agent_pos"]
    return np.array([pos[0], pos[2], info["state/agent_dir"]], dtype=np.float64)


def same_pose(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.hypot(*(a[:2] - b[:2])) <= POSITION_TOLERANCE and abs(_wrap(a[2] - b[2])) <= HEADING_TOLERANCE)


def play_probe(env, probe: Probe) -> PlayedProbe:
    """Replay a probe on a real env (built with the probe's task and frame size)."""
    frames, poses, _, _ = play(env, probe.seed, probe.prefix_actions + probe.actions)
    played = PlayedProbe(probe, frames, poses)
    if probe.kind in OCCLUDED_KINDS:
        played.target_pixels = colour_mask(frames, probe.params["color"]).sum(axis=(1, 2))
    return played


# ----------------------------------------------------------------------------- probe generators
class _Moves:
    def __init__(self, meanings: list[str]) -> None:
        try:
            self.L, self.R, self.F = (meanings.index(m) for m in ("turn_left", "turn_right", "move_forward"))
        except ValueError as e:
            raise ValueError(f"probes need turn_left, turn_right and move_forward actions; the task has {meanings}.") from e
        self.B = meanings.index("move_back") if "move_back" in meanings else None
        self.full = round(360 / TURN_DEGREES)  # 24 turns in a circle


def _loop(kind: str, size: int, m: _Moves) -> list[int]:
    if kind == "turn_back":
        return [m.L] * size + [m.R] * size
    if kind == "full_turn":
        return [m.L] * m.full
    half = [m.L] * (m.full // 2)
    return [m.F] * size + half + [m.F] * size + half


def _loop_probe(kind: str, size: int, seed: int, pre_right: int, cfg: SuiteConfig, m: _Moves) -> Probe:
    one = _loop(kind, size, m)
    L, loop, lead = len(one), one * cfg.repeats, 1
    prefix = [m.R] * pre_right + [m.L] * (cfg.context_frames - 1 - lead) + loop[:lead]
    returns = tuple(((r - 1) * L - lead, r * L - lead) for r in range(1, cfg.repeats + 1))
    params = {"loop_length": L, "size": size, "repeats": cfg.repeats, "pre_right": pre_right}
    return Probe(kind, cfg.task, seed, cfg.frame_size, tuple(prefix), tuple(loop[lead:]), returns, params)


def _valid_loop(probe: Probe, frames: np.ndarray, poses: np.ndarray, ok: bool, m: _Moves) -> bool:
    if not ok:
        return False
    origin, acts = len(probe.prefix_actions), probe.prefix_actions + probe.actions
    for i, a in enumerate(acts):  # every step did what it says: turns by TURN_DEGREES, forwards moved
        d = poses[i + 1] - poses[i]
        if a in (m.F, m.B) and (np.hypot(d[0], d[1]) < 1e-3 or abs(_wrap(d[2])) > HEADING_TOLERANCE):
            return False
        if a in (m.L, m.R) and abs(_wrap(d[2]) - math.radians(TURN_DEGREES) * (1 if a == m.L else -1)) > 1e-5:
            return False
    return all(same_pose(poses[origin + i], poses[origin + j]) for i, j in probe.returns)


def _target(info: dict) -> int | None:
    """The first present entity whose colour is one of TARGET_COLORS and no other entity's."""
    colors = info["state/entity_color"]
    for e, c in enumerate(colors):
        named = any(np.allclose(c, v) for v in TARGET_COLORS.values())
        if named and info["state/entity_present"][e] and sum(np.allclose(c, o) for o in colors) == 1:
            return e
    return None


def _permanence_probe(k: int, seed: int, info0: dict, target: int, cfg: SuiteConfig, m: _Moves) -> Probe:
    A, P = cfg.away_turns, cfg.context_frames
    agent, obj = info0["state/agent_pos"], info0["state/entity_pos"][target]
    bearing = math.atan2(-(obj[2] - agent[2]), obj[0] - agent[0])  # heading 0 faces +x, left turns towards -z
    steps = round(_wrap(bearing - float(info0["state/agent_dir"])) / math.radians(TURN_DEGREES))
    pre_right = (P - 1 - A - steps) % m.full  # so that frame -A faces the object
    dwell = [m.L if i % 2 == 0 else m.R for i in range(k - 1)]
    actions = dwell + [m.R] * (A + (k - 1) % 2)
    prefix = [m.R] * pre_right + [m.L] * (P - 1)
    color = [float(v) for v in info0["state/entity_color"][target]]
    params = {"k": k, "away_turns": A, "target": int(target), "color": color, "hidden": [0, k - 1],
              "pre_right": pre_right}
    return Probe("permanence", cfg.task, seed, cfg.frame_size, tuple(prefix), tuple(actions), ((-A, len(actions)),),
                 params)


def _valid_permanence(played: PlayedProbe, ok: bool) -> bool:
    probe, px = played.probe, played.target_pixels
    (face, ret), = probe.returns
    lo, hi = probe.params["hidden"]
    need = min_visible_pixels(probe.frame_size)
    o = played.origin
    return (ok and same_pose(played.pose(face), played.pose(ret)) and px[o + face] >= need and px[o + ret] >= need
            and not px[o + lo: o + hi + 1].any())


def gap_to_last_sight(played: PlayedProbe) -> int:
    """Permanence: frames from the last real frame showing the object before the hidden span to the first
    one showing it after (its real memory demand: a window of fewer frames holds no view of it)."""
    lo, hi = played.probe.params["hidden"]
    seen = played.target_pixels > 0
    o = played.origin
    before = max(i for i in range(o + lo) if seen[i])
    after = min(i for i in range(o + hi + 1, len(seen)) if seen[i])
    return after - before


def _scene_probes(env, scene_seed: int, rng_for, cfg: SuiteConfig, m: _Moves) -> list[PlayedProbe]:
    from worldsim.evaluation import walk_by  # (it builds on this module)

    out: list[PlayedProbe] = []
    specs = [("turn_back", j) for j in cfg.turn_back] + ([("full_turn", m.full)] if cfg.full_turn else [])
    specs += [("out_and_back", n) for n in cfg.out_and_back] + [("permanence", k) for k in cfg.permanence]
    specs += [("walk_by", n) for n in cfg.walk_by]
    for index, (kind, size) in enumerate(specs):
        played = None
        for attempt in range(cfg.max_attempts * (walk_by.ATTEMPTS if kind == "walk_by" else 1)):
            # out_and_back first tries other start headings of the same world, then other worlds
            heading_try = attempt % 8 if kind == "out_and_back" else 0
            world = attempt // 8 if kind == "out_and_back" else attempt
            seed = scene_seed if world == 0 else int(rng_for(index, world).integers(2**31 - 1))
            if kind in OCCLUDED_KINDS:
                _, info0 = env.reset(seed=seed)
                target = _target(info0)
                if target is None:
                    continue
                if kind == "permanence":
                    probe = _permanence_probe(size, seed, info0, target, cfg, m)
                else:
                    probe = walk_by.walk_by_probe(size, seed, env, info0, target, cfg, m)
                    if probe is None:
                        continue
            else:
                pre_right = (0, 12, 6, 18, 3, 15, 9, 21)[heading_try] if kind == "out_and_back" else 0
                probe = _loop_probe(kind, size, seed, pre_right, cfg, m)
            frames, poses, _, ok = play(env, probe.seed, probe.prefix_actions + probe.actions)
            candidate = PlayedProbe(probe, frames, poses)
            if kind in OCCLUDED_KINDS:
                candidate.target_pixels = colour_mask(frames, probe.params["color"]).sum(axis=(1, 2))
                if walk_by.valid(candidate, ok, m, env) if kind == "walk_by" else _valid_permanence(candidate, ok):
                    probe.params["gap"] = gap_to_last_sight(candidate)
                    played = candidate
                    break
            elif _valid_loop(probe, frames, poses, ok, m):
                played = candidate
                break
        if played is None:
            raise RuntimeError(f"no valid {kind} probe of size {size} in {cfg.max_attempts} attempts on {cfg.task} "
                               "(a task without room to walk, without a red, green or blue object, or - for "
                               "walk_by - without a wall that hides it?); change SuiteConfig or the task.")
        out.append(played)
    return out


def make_suite(seed: int = 0, count: int = 4, cfg: SuiteConfig | None = None, env=None) -> ProbeSuite:
    """``count`` scenes of every probe of ``cfg``, played and validated on the real MiniWorld env."""
    from worldsim.envs.miniworld import MiniWorldEnv

    cfg = cfg or SuiteConfig()
    if cfg.context_frames < max(2, cfg.away_turns + 1) or cfg.repeats < 1:
        raise ValueError(f"context_frames={cfg.context_frames} must exceed away_turns={cfg.away_turns} (and be >= 2), "
                         f"and repeats={cfg.repeats} >= 1.")
    own = env is None
    env = env or MiniWorldEnv(task=cfg.task, frame_size=cfg.frame_size, max_episode_steps=100_000)
    try:
        m = _Moves(env.unwrapped.action_meanings)
        if cfg.walk_by and m.B is None:
            raise ValueError(f"walk_by probes walk back (move_back), which {cfg.task} does not have; use "
                             "MiniWorld-WallWalk-v0 or set walk_by=().")
        _check_turn_step(env, m)
        probes: list[PlayedProbe] = []
        for scene in range(count):
            scene_seed = int(np.random.default_rng([seed, scene]).integers(2**31 - 1))
            rng_for = lambda index, world, s=scene: np.random.default_rng([seed, s, index, world])  # noqa: E731
            probes += _scene_probes(env, scene_seed, rng_for, cfg, m)
    finally:
        if own:
            env.close()
    return ProbeSuite(seed, count, cfg, probes)


def _check_turn_step(env, m: _Moves) -> None:
    _, info = env.reset(seed=0)
    info2 = env.step(m.L)[4]
    turn = math.degrees(_wrap(float(info2["state/agent_dir"]) - float(info["state/agent_dir"])))
    if abs(turn - TURN_DEGREES) > 1e-3:
        raise ValueError(f"{env.unwrapped.task} turns by {turn:.2f}° per step; the probes assume MiniWorld's default "
                         f"{TURN_DEGREES}° (no domain randomisation). Use a task with default params, e.g. OneRoom.")
