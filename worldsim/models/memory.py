"""Pose memory: the world model remembers past frames by *where they were seen from*.

A DiT attends to its last ``context_frames`` frames only, so anything that left the view earlier is
gone (the consistency benchmark measured permanence IoU 0.00 for every turn-away, docs/consistency.md).
Pose memory gives every generated frame one more input, the past frame whose camera pose is closest
to the pose the new frame will be seen from, as WorldMem (Xiao et al. 2025) retrieves memory frames
by field-of-view overlap:

* **Poses by odometry.** The env declares, per action, how far it moves the camera forward and how
  far it turns it (``motion``, metres and degrees: MiniWorld's ``forward_step`` and ``turn_step``;
  see ``envs/miniworld.py``). Poses ``(x, z, yaw)`` are integrated from the actions alone, the same
  way in training, in the dream and in the probes, so no ground truth is needed anywhere. A move
  that a wall blocks is counted as made: the dream cannot know better.
* **Retrieval.** Among the last ``span`` frames, the one with the smallest pose distance to the
  target (``|Δposition| / forward step + |Δyaw| / turn step``, in steps), the most recent among
  equals; none if the smallest distance exceeds :data:`MEMORY_RADIUS` steps.
* **Conditioning.** The retrieved latent frame is stacked into every token of the generated frame
  (as the last clean frames are) and the pose of that frame relative to the target (forward,
  lateral, yaw, in steps, and a found flag) is embedded and added to the tokens. Copying what the
  memory shows where the pose matches is then a local, linear path the model learns quickly.

Everything here is torch and batched: :class:`PoseMemory` keeps the history of ``b`` rollouts;
:func:`episode_memory` precomputes the retrieval of every frame of a training split.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

MEMORY_RADIUS = 2.0  # steps: a frame farther than this from the target's pose is no memory of it
RECENCY_TIEBREAK = 1e-3  # steps per frame of age (over the span): among equal distances, the newest frame
MEMORY_FEATURES = 4  # forward, lateral, yaw offsets (in steps, / radius) and the found flag


class Motion(NamedTuple):
    """Per-action camera motion: ``forward`` (num_actions,) metres and ``turn`` (num_actions,) radians
    (positive = left), with the step units that distances are counted in."""

    forward: torch.Tensor
    turn: torch.Tensor

    @classmethod
    def from_table(cls, table: torch.Tensor) -> "Motion":
        """``table`` (num_actions, 2): forward metres and turn degrees per action."""
        t = torch.as_tensor(table, dtype=torch.float64)
        return cls(t[:, 0], t[:, 1] * (math.pi / 180.0))

    @property
    def units(self) -> tuple[float, float]:
        """(forward step, turn step): the smallest nonzero motion of each kind (1 where there is none)."""
        def unit(v: torch.Tensor) -> float:
            nz = v.abs()[v.abs() > 1e-9]
            return float(nz.min()) if len(nz) else 1.0
        return unit(self.forward), unit(self.turn)


def check_motion_table(table, num_actions: int, where: str) -> torch.Tensor:
    """Validate an env's motion table (num_actions x [forward metres, turn degrees])."""
    if table is None:
        raise ValueError(
            f"model.memory_span > 0 needs the env's camera motion per action, and {where} has none: pose memory "
            "works on envs that declare it (MiniWorld). Collect the data again with this worldsim (the store's "
            "metadata then carries `motion`), or set model.memory_span=0.")
    t = torch.as_tensor(table, dtype=torch.float64)
    if t.shape != (num_actions, 2) or not torch.isfinite(t).all():
        raise ValueError(f"{where}: the motion table must be {num_actions} rows of [forward metres, turn degrees], "
                         f"got shape {tuple(t.shape)}.")
    if not (t != 0).any():
        raise ValueError(f"{where}: no action moves or turns the camera, so poses never change and pose memory "
                         "has nothing to retrieve by; set model.memory_span=0.")
    return t


def advance(pose: torch.Tensor, actions: torch.Tensor, motion: Motion) -> torch.Tensor:
    """Poses (..., 3) = (x, z, yaw) after ``actions`` (...): MiniWorld's convention, the camera looks
    along (cos yaw, -sin yaw) in (x, z); a move goes along the heading before any turn of the step."""
    fwd = motion.forward.to(pose.device)[actions]
    turn = motion.turn.to(pose.device)[actions]
    x = pose[..., 0] + fwd * torch.cos(pose[..., 2])
    z = pose[..., 1] - fwd * torch.sin(pose[..., 2])
    return torch.stack([x, z, pose[..., 2] + turn], dim=-1)


def integrate(actions: torch.Tensor, motion: Motion) -> torch.Tensor:
    """Poses (L+1, 3) float64 of the frames of an action sequence (L,), frame 0 at the origin."""
    turn = motion.turn[actions]
    yaw = torch.cat([turn.new_zeros(1), turn.cumsum(0)])  # heading of every frame
    fwd = motion.forward[actions]
    x = torch.cat([fwd.new_zeros(1), (fwd * torch.cos(yaw[:-1])).cumsum(0)])
    z = torch.cat([fwd.new_zeros(1), (-fwd * torch.sin(yaw[:-1])).cumsum(0)])
    return torch.stack([x, z, yaw], dim=-1)


def relative(past: torch.Tensor, target: torch.Tensor, units: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of ``past`` (..., 3) seen from ``target`` (..., 3): (forward, lateral, yaw) in steps (..., 3)
    and the pose distance in steps (...)."""
    dx, dz = past[..., 0] - target[..., 0], past[..., 1] - target[..., 1]
    c, s = torch.cos(target[..., 2]), torch.sin(target[..., 2])
    fwd, lat = (dx * c - dz * s) / units[0], (dx * s + dz * c) / units[0]
    dyaw = torch.remainder(past[..., 2] - target[..., 2] + math.pi, 2 * math.pi) - math.pi
    rel = torch.stack([fwd, lat, dyaw / units[1]], dim=-1)
    return rel, torch.hypot(fwd, lat) + rel[..., 2].abs()


def retrieve(poses: torch.Tensor, valid: torch.Tensor, age: torch.Tensor, target: torch.Tensor,
             units: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest past frame for every row: ``poses`` (b, S, 3), ``valid`` (b, S), ``age`` (b, S)
    frames before the target, ``target`` (b, 3) -> slot index (b,) and features (b, 4) (zeros and
    found = 0 where nothing lies within :data:`MEMORY_RADIUS`)."""
    rel, dist = relative(poses, target[:, None], units)
    score = dist + RECENCY_TIEBREAK * age / max(poses.shape[1], 1)
    score = torch.where(valid, score, torch.full_like(score, math.inf))
    best = score.argmin(dim=1)
    found = dist.gather(1, best[:, None])[:, 0] <= MEMORY_RADIUS
    found &= valid.gather(1, best[:, None])[:, 0]
    feats = torch.cat([rel[torch.arange(len(best)), best] / MEMORY_RADIUS, torch.ones_like(best[:, None], dtype=rel.dtype)], 1)
    return best, torch.where(found[:, None], feats, torch.zeros_like(feats)).float()


class MemoryIndex(NamedTuple):
    index: torch.Tensor  # (N,) flat frame index of each frame's memory, -1 where none
    features: torch.Tensor  # (N, 4) float32 relative pose (steps / radius) and found flag


def episode_memory(actions: torch.Tensor, episode_lengths: list[int], motion: Motion, span: int) -> MemoryIndex:
    """The memory of every frame of a split stored back to back (``actions`` (N,) padded to one per
    frame, episodes of ``episode_lengths`` frames): for frame t of an episode, the nearest-pose frame
    among its ``span`` predecessors (flat index), found the same way :class:`PoseMemory` finds it."""
    index = torch.full((len(actions),), -1, dtype=torch.long)
    features = torch.zeros((len(actions), MEMORY_FEATURES))
    offset, units = 0, motion.units
    for n in episode_lengths:
        poses = integrate(actions[offset : offset + n - 1], motion)  # (n, 3)
        for a in range(1, n, 4096):  # targets a..b-1 in chunks: (chunk, span) candidates each
            t = torch.arange(a, min(a + 4096, n))
            back = torch.arange(1, span + 1)
            j = t[:, None] - back  # (chunk, span) candidates, age back[k]
            ok = j >= 0
            best, feats = retrieve(poses[j.clamp_min(0)], ok, back.expand_as(j).double(), poses[t], units)
            chosen = j.gather(1, best[:, None])[:, 0]
            index[offset + t] = torch.where(feats[:, 3] > 0, offset + chosen, torch.full_like(chosen, -1))
            features[offset + t] = feats
        offset += n
    return MemoryIndex(index, features)


class PoseMemory:
    """The last ``span`` latent frames of ``b`` rollouts with their odometry poses (a ring per row)."""

    def __init__(self, batch_size: int, span: int, latent_shape: tuple[int, ...], motion: Motion,
                 device: torch.device) -> None:
        self.span, self.motion, self.units = span, motion, motion.units
        self.latents = torch.zeros((batch_size, span, *latent_shape), device=device)
        self.poses = torch.zeros((batch_size, span, 3), dtype=torch.float64, device=device)
        self.stamp = torch.full((batch_size, span), -1, dtype=torch.long, device=device)  # frame number, -1 empty
        self.pose = torch.zeros((batch_size, 3), dtype=torch.float64, device=device)  # pose of the newest frame
        self.count = torch.zeros(batch_size, dtype=torch.long, device=device)  # frames seen per row

    def reset(self, latents: torch.Tensor, prev_actions: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Start ``rows`` (all if None) from frames (r, H, c, h, w) and the actions that led to them
        (r, H); the first action is ignored (the first frame is the origin)."""
        rows = torch.arange(self.latents.shape[0], device=latents.device) if rows is None else rows
        self.stamp[rows] = -1
        self.count[rows] = 0
        self.pose[rows] = 0.0
        for k in range(latents.shape[1]):
            self.push(latents[:, k], rows)
            if k + 1 < latents.shape[1]:
                self.pose[rows] = advance(self.pose[rows], prev_actions[:, k + 1], self.motion)

    def push(self, latents: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Store frames (r, c, h, w) seen from the rows' current pose."""
        rows = torch.arange(self.latents.shape[0], device=latents.device) if rows is None else rows
        slot = self.count[rows] % self.span
        self.latents[rows, slot] = latents.to(self.latents.dtype)
        self.poses[rows, slot] = self.pose[rows]
        self.stamp[rows, slot] = self.count[rows]
        self.count[rows] += 1

    def query(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory of the frame that ``actions`` (b,) lead to: latents (b, c, h, w), features (b, 4)."""
        target = advance(self.pose, actions, self.motion)
        age = (self.count[:, None] - self.stamp).double()  # the newest frame is 1 frame before the target
        best, feats = retrieve(self.poses, self.stamp >= 0, age, target, self.units)
        found = feats[:, 3:].reshape(-1, *([1] * (self.latents.dim() - 2)))
        return self.latents[torch.arange(len(best)), best] * found, feats

    def append(self, latents: torch.Tensor, actions: torch.Tensor) -> None:
        """The rollouts took ``actions`` (b,) and reached frames (b, c, h, w)."""
        self.pose = advance(self.pose, actions, self.motion)
        self.push(latents)
