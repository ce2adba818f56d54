"""The run report opened in a real headless browser (Debian's Chromium, installed by setup): it loads
without console errors and its images and videos resolve, as seen from inside the browser."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from worldsim.cli import main

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

WAIT_FOR_MEDIA = """
const done = arguments[arguments.length - 1];
const videos = Array.from(document.querySelectorAll('video'));
Promise.all(videos.map(v => v.readyState >= 1 ? Promise.resolve() : new Promise(r => {
  v.addEventListener('loadedmetadata', r, {once: true}); v.addEventListener('error', r, {once: true}); v.load(); })))
  .then(() => done({
    images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
    videos: videos.map(v => [v.getAttribute('src'), v.readyState >= 1 && v.videoWidth > 0, v.duration]),
  }));
"""


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="needs chromium and chromedriver (bash scripts/setup.sh)")
def test_report_page_in_headless_chromium(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    run = tmp_path / "run"
    assert main([
        "run", "model=tiny", f"data_dir={tmp_path}/data", f"heldout_dir={tmp_path}/held", f"run_dir={run}",
        "collect.steps=400", "collect.heldout_steps=200", "collect.num_workers=1", "env.kwargs.max_episode_steps=100",
        "model.tokenizer_train.steps=10", "model.world_model_train.steps=10", "agent.steps=32", "agent.num_envs=2",
        "agent.n_steps=16", "agent.batch_size=32", "agent.eval_episodes=1", "agent.eval_max_steps=20",
        "evaluate.num_windows=4", "evaluate.horizons=[1,2]", "device=cpu", "progress=false",
    ]) == 0
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.set_script_timeout(60)
        driver.get((run / "report.html").as_uri())
        media = driver.execute_async_script(WAIT_FOR_MEDIA)
        logs = driver.get_log("browser")
    finally:
        driver.quit()
    assert media["images"] and all(ok for _, ok in media["images"]), media["images"]
    assert media["videos"] and all(ok for _, ok, _ in media["videos"]), media["videos"]
    assert {Path(src).name for src, _ in media["images"]} >= {"dream.gif", "world_model_eval.png"}
    errors = [entry for entry in logs if entry["level"] == "SEVERE"]
    assert not errors, errors
