"""The window of ``worldsim play``: the screen of a :class:`~worldsim.sim.play.PlaySession` and the
pygame loop that plays it with the keyboard, or headless (``SDL_VIDEODRIVER=dummy``) from a script.

pygame is imported inside :func:`run_play` only, so importing this module needs no display.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from worldsim.sim.keymaps import CONTROL_KEYS
from worldsim.sim.play import COMMANDS, PlaySession

COLORS = {"real": (40, 160, 60), "dream": (60, 110, 220), "other": (90, 90, 90), "text": (230, 230, 230)}
LINE, CHAR, MIN_WIDTH = 12, 7, 520  # overlay text: pixels per line, per character; narrowest window


def _panel(frame: np.ndarray, scale: int, color: tuple[int, int, int], border: int = 2) -> np.ndarray:
    big = frame.repeat(scale, 0).repeat(scale, 1)
    out = np.empty((big.shape[0] + 2 * border, big.shape[1] + 2 * border, 3), np.uint8)
    out[:] = color
    out[border:-border, border:-border] = big
    return out


def render_screen(session: PlaySession, scale: int = 4) -> np.ndarray:
    """The window's picture (H, W, 3) uint8: the world you play at ``scale`` (green border: real,
    blue: dream), the other world at half that beside it, the status and the key bindings below."""
    from PIL import Image, ImageDraw

    other = "real" if session.mode == "dream" else "dream"
    shown = [(session.mode, _panel(session.frames[session.mode], scale, COLORS[session.mode]))]
    if other in session.frames:
        shown.append((f"{other} (shadow)", _panel(session.frames[other], max(1, scale // 2), COLORS["other"])))
    width = max(sum(p.shape[1] + 4 for _, p in shown), MIN_WIDTH)
    lines = [w for line in session.status_lines() for w in textwrap.wrap(line, width // CHAR) or [""]]
    top = LINE + max(p.shape[0] for _, p in shown)
    img = np.zeros((top + LINE * len(lines) + 4, width, 3), np.uint8)
    x = 0
    for _, p in shown:
        img[LINE:LINE + p.shape[0], x:x + p.shape[1]] = p
        x += p.shape[1] + 4
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    x = 0
    for label, p in shown:
        draw.text((x + 2, 0), label.upper(), fill=COLORS["text"])
        x += p.shape[1] + 4
    for i, line in enumerate(lines):
        draw.text((3, top + 2 + LINE * i), line, fill=COLORS["text"])
    return np.asarray(pil)


class PlayResult(NamedTuple):
    steps: int  # steps played (both worlds)
    episodes_written: list[Path]  # real episodes written into the store
    ticks: int  # frames shown


ScriptEvent = tuple  # (tick, key name) a tap | (tick, key name, "down" | "up") | (tick, command or action index)


def _schedule(script: Sequence[ScriptEvent], pygame: Any) -> dict[int, list[tuple[str, Any]]]:
    out: dict[int, list[tuple[str, Any]]] = {}
    for event in script:
        ok = isinstance(event, (tuple, list)) and len(event) in (2, 3) and isinstance(event[0], (int, np.integer))
        tick, what, *kind = event if ok else (-1, None)
        if tick < 0 or (kind and kind[0] not in ("down", "up")):
            raise ValueError(f"bad script event {event!r}: use (tick, key), (tick, key, 'down'|'up') or "
                             f"(tick, command) with a command of {', '.join(COMMANDS)} or an action index.")
        if isinstance(what, (int, np.integer)) or what in COMMANDS:
            out.setdefault(int(tick), []).append(("command", what))
            continue
        try:
            code = pygame.key.key_code(what)
        except ValueError:
            raise ValueError(f"script event {event!r}: {what!r} is not a pygame key name (e.g. 'up', 'space', "
                             "'tab', 'escape', 'a', '1').") from None
        t = int(tick)
        for k, at in ([(kind[0], t)] if kind else [("down", t), ("up", t + 1)]):  # a tap: held for one tick
            out.setdefault(at, []).append((k, code))
    return out


def run_play(session: PlaySession, scale: int = 4, fps: int = 15, script: Sequence[ScriptEvent] | None = None,
             max_steps: int | None = None) -> PlayResult:
    """Play ``session`` in a pygame window until quit (ESC/Q, closing the window), ``max_steps`` or the
    end of ``script``; then the session is closed (its running real episode written).

    Held keys make the action of each tick (``session.keymap``), control keys act when pressed
    (:data:`~worldsim.sim.keymaps.CONTROL_KEYS`). ``script`` replaces the keyboard: its key events are
    posted into pygame's event queue at their tick, so they take the keyboard's own path; commands
    and action indices go to ``session.handle``. ``fps=0`` runs as fast as it can.
    """
    import pygame

    clock, screen, held, tick = pygame.time.Clock(), None, set(), 0
    try:
        pygame.display.init()  # before key names are looked up
        pygame.display.set_caption("worldsim play")
        pending = _schedule(script, pygame) if script is not None else {}
        last = max(pending, default=-1)
        while not session.done:
            for kind, what in pending.pop(tick, []):
                if kind == "command":
                    session.handle(what)
                else:
                    pygame.event.post(pygame.event.Event(pygame.KEYDOWN if kind == "down" else pygame.KEYUP, key=what))
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    session.handle("quit")
                elif event.type == pygame.KEYDOWN:
                    name = pygame.key.name(event.key)
                    held.add(name)
                    if name in CONTROL_KEYS:
                        session.handle(CONTROL_KEYS[name])
                elif event.type == pygame.KEYUP:
                    held.discard(pygame.key.name(event.key))
                elif event.type == pygame.WINDOWFOCUSLOST:
                    held.clear()  # keys released outside the window never send KEYUP
            action = session.keymap.action(held)
            if action is not None:
                session.handle(action)
            if (max_steps is not None and session.total_steps >= max_steps) or (script is not None and tick >= last):
                session.handle("quit")
            if session.done:
                break
            img = render_screen(session, scale)
            if screen is None or screen.get_size() != (img.shape[1], img.shape[0]):
                screen = pygame.display.set_mode((img.shape[1], img.shape[0]))
            screen.blit(pygame.surfarray.make_surface(img.swapaxes(0, 1)), (0, 0))
            pygame.display.flip()
            if fps:
                clock.tick(fps)
            tick += 1
    finally:
        session.close()
        pygame.display.quit()
    return PlayResult(session.total_steps, list(session.written), tick)
