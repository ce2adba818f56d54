"""Walk-by probes (kind ``walk_by``, probe suite v2): an object that a wall hides while the agent
walks by, on tasks with an occluding wall (``MiniWorld-WallWalk-v0``). Generated and validated on
the real env like every kind of :mod:`worldsim.evaluation.probes` (see its docstring and
docs/consistency.md "Walk-by")."""

from __future__ import annotations

import math

import numpy as np

from worldsim.evaluation.probes import (TURN_DEGREES, PlayedProbe, Probe, SuiteConfig, _Moves, _valid_loop,
                                        _valid_permanence, _wrap, colour_mask, min_visible_pixels, play)

HALF_FOV_MARGIN = 25.0  # degrees: the hidden object stays this close to the view's centre (half FOV 30°)
ATTEMPTS = 50  # x max_attempts worlds: ~2.5% of WallWalk worlds hold a walk of m = 4 (a geometric filter skips most)


def _bearing_offset(pose: np.ndarray, obj: np.ndarray) -> float:
    """Degrees between the camera's heading and the direction to ``obj`` (x, y, z)."""
    bearing = math.atan2(-(obj[2] - pose[1]), obj[0] - pose[0])
    return abs(math.degrees(_wrap(bearing - pose[2])))


def headings(info0: dict, target: int, size: int, cfg: SuiteConfig, m: _Moves, step: float) -> list[int]:
    """Left turns (0..23) to headings worth rendering, nearest the object first: it is in view, and for a
    task with a known wall (``WALL_WALK``'s geometry) its line of sight passes the gap at the start and
    meets the wall after j <= P - 1 forward steps for ``size + 1`` steps, inside the room."""
    from worldsim.envs.miniworld_tasks import WALL_WALK, in_near_room, sight_through_gap

    obj = info0["state/entity_pos"][target]
    start = np.array([info0["state/agent_pos"][0], info0["state/agent_pos"][2], float(info0["state/agent_dir"])])
    out = []
    for i in range(m.full):
        pose = start + [0, 0, math.radians(TURN_DEGREES * i)]
        if _bearing_offset(pose, obj) > HALF_FOV_MARGIN:
            continue
        if cfg.task == WALL_WALK:
            n = np.arange(cfg.context_frames + size)[:, None]
            xz = pose[:2] + n * step * np.array([math.cos(pose[2]), -math.sin(pose[2])])
            seen = [sight_through_gap(p, (obj[0], obj[2])) for p in xz]
            inside = all(in_near_room(p) for p in xz)
            if not (inside and seen[0] and any(not any(seen[j : j + size + 1]) for j in range(1, cfg.context_frames))):
                continue
        out.append(i)
    return sorted(out, key=lambda i: _bearing_offset(start + [0, 0, math.radians(TURN_DEGREES * i)], obj))


def walk_by_probe(size: int, seed: int, env, info0: dict, target: int, cfg: SuiteConfig, m: _Moves) -> Probe | None:
    """The first heading (of the 24 reachable by turning in place) from which the object shows, a
    forward walk of ``j`` steps hides it, and ``size`` more keep it hidden inside the view; None if none."""
    P, need = cfg.context_frames, min_visible_pixels(cfg.frame_size)
    obj, color = info0["state/entity_pos"][target], info0["state/entity_color"][target]
    step = float(env.unwrapped.motion[m.F][0])
    for i in headings(info0, target, size, cfg, m, step):
        walk = P - 1 + size  # forward steps: j <= P - 1 of them in the context
        frames, poses, _, _ = play(env, seed, [m.L] * i + [m.F] * walk)
        px, poses = colour_mask(frames[i:], color).sum(axis=(1, 2)), poses[i:]  # from the turned pose on
        if px[0] < need:
            continue
        hidden = np.flatnonzero(px == 0)
        j = int(hidden[0]) if len(hidden) else 0
        if not 1 <= j <= P - 1 or px[j : j + size + 1].any():
            continue
        moved = np.hypot(*np.diff(poses[: j + size + 1, :2], axis=0).T) > 1e-3
        if not moved.all() or any(_bearing_offset(p, obj) > HALF_FOV_MARGIN for p in poses[j : j + size + 1]):
            continue
        pre_right = (P - 1 - j - i) % m.full
        prefix = [m.R] * pre_right + [m.L] * (P - 1 - j) + [m.F] * j
        actions = [m.F] * size + [m.B] * (size + j)
        params = {"m": size, "k": 2 * size + 1, "walk_in": j, "target": int(target), "color": [float(v) for v in color],
                  "target_pos": [float(v) for v in obj], "hidden": [0, 2 * size], "pre_right": pre_right}
        return Probe("walk_by", cfg.task, seed, cfg.frame_size, tuple(prefix), tuple(actions), ((-j, len(actions)),),
                     params)
    return None


def valid(played: PlayedProbe, ok: bool, m: _Moves, env) -> bool:
    """Permanence's conditions, every step moved, and while hidden the object inside the view and
    drawn in no pixel at all (re-rendered without it: not even a dark edge the colour mask misses)."""
    if not (_valid_permanence(played, ok) and _valid_loop(played.probe, played.frames, played.poses, ok, m)):
        return False
    probe = played.probe
    lo, hi = probe.params["hidden"]
    if any(_bearing_offset(played.pose(t), probe.params["target_pos"]) > HALF_FOV_MARGIN for t in range(lo, hi + 1)):
        return False
    actions = played.all_actions
    env.reset(seed=probe.seed)
    for n, a in enumerate(actions[: played.origin + hi], start=1):  # frame index n - origin
        env.step(int(a))
        if n - played.origin >= lo and env.unwrapped.entity_pixels(probe.params["target"]).any():
            return False
    return True
