"""One running Minetest game for :mod:`worldsim.envs.minetest`: its own X display, port and home.

A :class:`MinetestGame` starts ``Xvfb`` on a free display and the Minetest client (Debian's
``minetest`` 5.6 with ``minetest-data``'s Minetest Game) on it, as a local game whose server binds
to a free UDP port on the loopback interface only, with a fresh home folder holding the config and
a new world whose map comes from ``world_seed``. The world carries worldsim's world mod
(``envs/minetest_mod``), which writes the player's state to a file every server step and runs the
commands written to another (see its ``init.lua``).

Input goes through the XTest extension after the game window is given the input focus explicitly
(there is no window manager); frames are read from the window with ``XGetImage``. Both processes
are started with ``PR_SET_PDEATHSIG`` so that the kernel kills them when this process dies, even
by SIGKILL; :meth:`close` stops them and removes the home folder, and a new game removes the
folders of earlier games whose owner process is gone.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MOD_DIR = Path(__file__).with_name("minetest_mod")
# what the looked-at node is, by its groups (liquids are not pointable, as in the game)
POINTED_KINDS: tuple[str, ...] = ("none", "tree", "leaves", "wood", "sand", "soil", "stone", "wool", "flora", "other")
KEYSYMS = {"forward": "w", "back": "s", "left": "a", "right": "d", "jump": "space", "sneak": "Shift_L",
           "toggle_chat": "F2"}  # F2 only hides the chat (no menu); sent once at start
INSTALL_HINT = ("Install Minetest with `apt-get install minetest minetest-data xvfb` (Debian/Ubuntu; "
                "scripts/setup.sh does it) and the X client library with `pip install \"worldsim[minetest]\"`.")
_HOME_PREFIX = "worldsim-minetest-"


class MinetestError(RuntimeError):
    pass


@dataclass
class GameState:
    """The world mod's report of one server step (see envs/minetest_mod/init.lua)."""

    ack: int
    server_step: int
    pos: np.ndarray  # (3,) feet position (x, y up, z)
    yaw: float  # radians, 0 facing +z, counter-clockwise seen from above
    pitch: float  # radians, positive looking down
    pointed_pos: np.ndarray  # (3,) int, the node pointed at (0 when none)
    pointed_name: str
    pointed_kind: str
    wood: int  # tree nodes dug since the last reset
    time_of_day: float
    starts: list[tuple[float, float, float, float, float]] | None = field(default=None)


def parse_state(text: str) -> GameState | None:
    """The state file's text -> :class:`GameState`, or ``None`` if it is incomplete."""
    lines = {}
    for line in text.splitlines():
        words = line.split()
        if words:
            lines[words[0]] = words[1:]
    try:
        starts = None
        n = int(lines["starts"][0])
        if n >= 0:
            vals = [float(v) for v in lines["starts"][1:]]
            starts = [tuple(vals[5 * i: 5 * i + 5]) for i in range(n)]
        return GameState(
            ack=int(lines["ack"][0]), server_step=int(lines["step"][0]),
            pos=np.array([float(v) for v in lines["pos"]], np.float32),
            yaw=float(lines["look"][0]), pitch=float(lines["look"][1]),
            pointed_pos=np.array([int(v) for v in lines["pointed"][:3]], np.int32),
            pointed_name=lines["pointed"][3], pointed_kind=lines["pointed"][4],
            wood=int(lines["wood"][0]), time_of_day=float(lines["time"][0]), starts=starts)
    except (KeyError, IndexError, ValueError):
        return None


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGKILL to the child when its parent dies (Linux)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _remove_stale_homes() -> None:
    """Home folders of games whose owner process died without closing them (e.g. SIGKILL)."""
    for d in Path(tempfile.gettempdir()).glob(_HOME_PREFIX + "*"):
        try:
            pid = int(d.name[len(_HOME_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def find_executable(executable: str | None = None) -> str:
    for candidate in ([executable] if executable else ["minetest", "/usr/games/minetest"]):
        path = shutil.which(candidate)
        if path:
            return path
    raise MinetestError(f"Minetest was not found ({executable or 'minetest, /usr/games/minetest'}). {INSTALL_HINT}")


def config_text(width: int, height: int, port: int, world_seed: int, fov: int, view_range: int,
                sensitivity: float) -> str:
    """The client config: a fixed, quiet world (no clouds, no time passing, no damage, no sound, no
    particles, no bobbing, no HUD highlight) that keeps running without the input focus."""
    return "\n".join([
        f"screen_w = {width}", f"screen_h = {height}", "fullscreen = false", "autosave_screensize = false",
        "enable_sound = false", "enable_clouds = false", "menu_clouds = false", "enable_shaders = false",
        "pause_on_lost_focus = false", f"fixed_map_seed = {world_seed}", "bind_address = 127.0.0.1",
        f"port = {port}", "server_announce = false", "show_statusline_on_connect = false", "time_speed = 0",
        "enable_damage = false", "creative_mode = false", f"viewing_range = {view_range}", f"fov = {fov}",
        "fps_max = 60", "fps_max_unfocused = 60", "view_bobbing_amount = 0", "fall_bobbing_amount = 0",
        "enable_particles = false", "node_highlighting = none", "show_entity_selectionbox = false",
        "enable_minimap = false", f"mouse_sensitivity = {sensitivity:.6f}", "invert_mouse = false",
        "dedicated_server_step = 0.05", "world_start_time = 12000", "enable_waving_water = false", "enable_waving_leaves = false",
        "enable_waving_plants = false", "camera_smoothing = 0", "enable_build_where_you_stand = false", ""])


class MinetestGame:
    """One game: Xvfb + the Minetest client with a local server, driven through X and the mod's files."""

    def __init__(self, width: int, height: int, world_seed: int, fov: int = 72, view_range: int = 40,
                 sensitivity: float = 0.2, executable: str | None = None, timeout: float = 60.0) -> None:
        try:
            from Xlib import X, XK, display
            from Xlib.ext import xtest
        except ImportError as e:
            raise MinetestError(f"python-xlib is missing ({e}). {INSTALL_HINT}") from e
        self._X, self._XK, self._xtest = X, XK, xtest
        self.width, self.height, self.timeout = width, height, timeout
        self._procs: list[subprocess.Popen] = []
        self._display = None
        exe = find_executable(executable)
        if shutil.which("Xvfb") is None:
            raise MinetestError(f"Xvfb was not found. {INSTALL_HINT}")
        _remove_stale_homes()
        self.home = Path(tempfile.mkdtemp(prefix=f"{_HOME_PREFIX}{os.getpid()}-"))
        try:
            self.display_name = self._start_xvfb()
            self.world = self.home / "world"
            (self.world / "worldmods").mkdir(parents=True)
            shutil.copytree(MOD_DIR, self.world / "worldmods" / "worldsim_bridge")
            (self.world / "world.mt").write_text("gameid = minetest_game\nbackend = sqlite3\n"
                                                 "player_backend = sqlite3\nauth_backend = sqlite3\n")
            self.port = _free_udp_port()
            conf = self.home / "minetest.conf"
            conf.write_text(config_text(width, height, self.port, world_seed, fov, view_range, sensitivity))
            self.state_path = self.world / "worldsim" / "state.txt"
            self.cmd_path = self.world / "worldsim" / "cmd.txt"
            self.log_path = self.home / "debug.txt"
            env = dict(os.environ, HOME=str(self.home), DISPLAY=self.display_name)
            self._game = self._spawn([exe, "--go", "--world", str(self.world), "--config", str(conf), "--name",
                                      "player", "--password", "", "--port", str(self.port), "--logfile",
                                      str(self.log_path)], env)
            self._display = display.Display(self.display_name)
            self._window = self._wait_for(self._find_window, "the game window")
            self._wait_for(self.state, "the world mod's first state report")
            self._window.configure(x=self.width, y=self.height)
            self._display.sync()
            self._window.set_input_focus(X.RevertToParent, X.CurrentTime)
            self.key("toggle_chat", True)
            self.key("toggle_chat", False)
            self._display.sync()
            self._seq = 0
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ processes
    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.home / f"{Path(args[0]).name}.out", "wb")
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
        log.close()
        self._procs.append(proc)
        return proc

    def _start_xvfb(self) -> str:
        n = 60
        for _ in range(100):
            owner = self._lock_owner(n)
            if Path(f"/tmp/.X{n}-lock").exists() and (owner is None or _pid_alive(owner)):
                n += 1  # taken (a stale lock of a killed server is fine: Xvfb removes it)
                continue
            # a screen 3x the window, the window in its middle: camera moves that pile up before the
            # game re-centres the pointer (a busy CPU) are never clipped at the screen's edge
            proc = self._spawn(["Xvfb", f":{n}", "-screen", "0", f"{3 * self.width}x{3 * self.height}x24",
                                "-nolisten", "tcp"])
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10 and proc.poll() is None:
                if Path(f"/tmp/.X11-unix/X{n}").exists() and self._lock_owner(n) == proc.pid:
                    return f":{n}"  # our server holds the display (games starting at once race for numbers)
                time.sleep(0.02)
            self._procs.remove(proc)
            proc.kill()
            proc.wait()
            n += 1  # another process took this display first
        raise MinetestError("Xvfb did not start on any display :60-:159; see its log in " + str(self.home))

    @staticmethod
    def _lock_owner(n: int) -> int | None:
        try:
            return int(Path(f"/tmp/.X{n}-lock").read_text().strip())
        except (OSError, ValueError):
            return None

    def _check_alive(self) -> None:
        for p in self._procs:
            if p.poll() is not None:
                name = Path(p.args[0]).name
                log = self.log_path if name != "Xvfb" else self.home / "Xvfb.out"
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise MinetestError(f"{name} exited with code {p.returncode}. Log tail ({log}):\n{tail}")

    def _wait_for(self, probe, what: str):
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.timeout:
            self._check_alive()
            value = probe()
            if value:
                return value
            time.sleep(0.02)
        raise MinetestError(f"timed out after {self.timeout:.0f} s waiting for {what}; the game's log is {self.log_path}")

    def _find_window(self):
        X = self._X
        todo = list(self._display.screen().root.query_tree().children)
        while todo:
            w = todo.pop()
            g = w.get_geometry()
            if (g.width, g.height) == (self.width, self.height) and w.get_attributes().map_state == X.IsViewable:
                return w
            todo.extend(w.query_tree().children)
        return None

    def close(self) -> None:
        if self._display is not None:
            try:
                self._display.close()
            except Exception:
                pass
            self._display = None
        for p in reversed(self._procs):  # the game first, then its X server
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._procs = []
        if getattr(self, "home", None) is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    @property
    def alive(self) -> bool:
        return self._display is not None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    # ------------------------------------------------------------------ the mod's files
    def state(self) -> GameState | None:
        try:
            return parse_state(self.state_path.read_text())
        except FileNotFoundError:
            return None

    def command(self, *lines: str) -> GameState:
        """Run commands in the world mod; returns the first state reported after they ran."""
        self._seq += 1
        tmp = self.cmd_path.with_suffix(".tmp")
        tmp.write_text(f"seq {self._seq}\n" + "".join(line + "\n" for line in lines))
        os.replace(tmp, self.cmd_path)
        seq = self._seq
        return self._wait_for(lambda: (s := self.state()) is not None and s.ack >= seq and s,
                              f"the world mod to run {lines!r}")

    # ------------------------------------------------------------------ X input and frames
    def key(self, name: str, down: bool) -> None:
        X = self._X
        code = self._display.keysym_to_keycode(self._XK.string_to_keysym(KEYSYMS[name]))
        self._xtest.fake_input(self._display, X.KeyPress if down else X.KeyRelease, code)

    def button(self, down: bool) -> None:
        X = self._X
        self._xtest.fake_input(self._display, X.ButtonPress if down else X.ButtonRelease, 1)

    def look(self, dx: int, dy: int) -> None:
        """Move the pointer by (dx, dy) pixels. The game turns the camera by the pointer's distance
        from the window centre each frame and re-centres it, so moves made between two frames add up."""
        self._xtest.fake_input(self._display, self._X.MotionNotify, detail=True, x=dx, y=dy)

    def flush(self) -> None:
        self._display.sync()

    def grab(self) -> np.ndarray:
        """The window's pixels, (height, width, 3) uint8 RGB."""
        raw = self._window.get_image(0, 0, self.width, self.height, self._X.ZPixmap, 0xFFFFFFFF)
        bgrx = np.frombuffer(raw.data, np.uint8).reshape(self.height, self.width, 4)
        return bgrx[..., 2::-1].copy()
