"""MiniWorld tasks of worldsim's own, registered with Gymnasium beside MiniWorld's (imported by
:func:`worldsim.envs.miniworld._import_miniworld`, after MiniWorld itself).

``MiniWorld-WallWalk-v0``: the consistency probes' occlusion scene ("an object that a wall hides
while the agent walks by"). Two rooms, 10 m wide, divided by a brick wall along ``z = 0`` with a
3 m gap in its middle (MiniWorld's ``WallGap`` layout, smaller); a red box stands somewhere in the
far room (``z < 0``), the agent starts anywhere in the near one. Four actions (turn left / right by
15°, move forward / back by 0.15 m), so a walk can be undone without turning: walking forward at an
angle to the wall moves the box's line of sight from the gap onto the wall (parallax) and hides it
though it is in front of the camera; walking back brings it back. No reward; episodes end after
``max_episode_steps`` (300).
"""

from __future__ import annotations

import functools

import gymnasium as gym
from gymnasium import spaces

WALL_WALK = "MiniWorld-WallWalk-v0"
ROOM_HALF_WIDTH = 5.0  # metres, along x
ROOM_DEPTH = 5.5  # metres, along z, each side of the wall
GAP_HALF_WIDTH = 1.5
WALL_HALF_THICKNESS = 0.5  # the rooms end at z = +-0.5: the wall between them fills |z| < 0.5
AGENT_MARGIN = 0.5  # metres an agent's centre keeps from a wall (its radius 0.4, and some)


def sight_through_gap(agent_xz, target_xz) -> bool:
    """Whether the straight line from a point of the near room (z > 0.5) to one of the far room
    (z < -0.5) passes both faces of the dividing wall inside its gap (centre line only: the box's own
    size is for the rendered frames to settle)."""
    (x, z), (tx, tz) = agent_xz, target_xz
    return all(abs(x + (tx - x) * (z - face) / (z - tz)) < GAP_HALF_WIDTH for face in (WALL_HALF_THICKNESS, -WALL_HALF_THICKNESS))


def in_near_room(xz) -> bool:
    x, z = xz
    return abs(x) < ROOM_HALF_WIDTH - AGENT_MARGIN and WALL_HALF_THICKNESS + AGENT_MARGIN < z < WALL_HALF_THICKNESS + ROOM_DEPTH - AGENT_MARGIN


def register() -> None:
    if WALL_WALK not in gym.registry:
        gym.register(id=WALL_WALK, entry_point="worldsim.envs.miniworld_tasks:WallWalk")


@functools.cache
def _wall_walk_class():
    from miniworld.entity import Box
    from miniworld.miniworld import MiniWorldEnv

    class WallWalk(MiniWorldEnv):
        def __init__(self, max_episode_steps: int = 300, **kwargs) -> None:
            super().__init__(max_episode_steps=max_episode_steps, **kwargs)
            self.action_space = spaces.Discrete(self.actions.move_back + 1)

        def _gen_world(self) -> None:
            w, d, wall = ROOM_HALF_WIDTH, ROOM_DEPTH, WALL_HALF_THICKNESS
            near = self.add_rect_room(min_x=-w, max_x=w, min_z=wall, max_z=wall + d, wall_tex="brick_wall",
                                      floor_tex="asphalt", no_ceiling=True)
            far = self.add_rect_room(min_x=-w, max_x=w, min_z=-wall - d, max_z=-wall, wall_tex="brick_wall",
                                     floor_tex="asphalt", no_ceiling=True)
            self.connect_rooms(near, far, min_x=-GAP_HALF_WIDTH, max_x=GAP_HALF_WIDTH)
            self.box = self.place_entity(Box(color="red"), room=far)
            self.place_agent(room=near)

    return WallWalk


def __getattr__(name: str):  # the class needs MiniWorld (and an OpenGL context) only when it is built
    if name == "WallWalk":
        return _wall_walk_class()
    raise AttributeError(name)
