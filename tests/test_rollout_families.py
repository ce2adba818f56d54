"""`worldsim rollout` on every env family's recordings, not only Atari: MiniWorld and Crafter play
recorded by `worldsim collect`, and Minecraft recordings brought in by `worldsim import-minerl`.

Each case records a small store, trains a tiny tokenizer and world model on it through the CLI
(a few steps: the dream's quality is not the point here), writes the real | dream | error video and
GIF, and checks them: frame count, size, and that every frame's caption names the action taken in
the env's own vocabulary (the family adapter's action meanings, not Atari's).
"""

from __future__ import annotations

import imageio.v2 as imageio
import pytest

from worldsim.cli import main
from worldsim.data.store import EpisodeStore
from worldsim.evaluation.video import render_rollouts
from worldsim.models.loading import load_world_model

STEPS, ROWS, SCALE = 6, 2, 2


def record(family: str, data_dir, tmp_path) -> None:
    if family == "minerl":  # VPT-format recordings (the contractor data's format), made here
        from test_minerl import vpt_line, write_recording

        src = tmp_path / "vpt"
        moves = [("w",), ("w", "space"), (), ("s",), ("a",), ("d",)]
        for r in range(3):
            write_recording(src, f"rec-{r}", [vpt_line(i, keys=moves[(i // 3 + r) % 6], dx=40.0 * (i % 5 == 0))
                                              for i in range(30)])
        assert main(["import-minerl", f"src={src}", f"data_dir={data_dir}", "progress=false"]) == 0
    else:
        assert main(["collect", f"env={family}", "steps=240", f"data_dir={data_dir}", "num_workers=0",
                     "progress=false"]) == 0


@pytest.mark.parametrize("family", ["miniworld", "crafter", "minerl"])
def test_rollout_video_of_each_family(family, tmp_path, capsys):
    if family == "miniworld":
        pytest.importorskip("miniworld")
    if family == "crafter":
        pytest.importorskip("crafter")
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    record(family, data_dir, tmp_path)
    common = [f"env={family}", "model=tiny", f"data_dir={data_dir}", f"run_dir={run_dir}", "progress=false"]
    assert main(["train-tokenizer", *common, "model.tokenizer_train.steps=10"]) == 0
    assert main(["train-world-model", *common, "model.world_model_train.steps=4"]) == 0
    mp4, gif = tmp_path / "r.mp4", tmp_path / "r.gif"
    assert main(["rollout", *common[:-1], f"checkpoint={run_dir / 'world_model.pt'}", f"out={mp4}", f"gif={gif}",
                 f"steps={STEPS}", f"rows={ROWS}", "split=all", f"scale={SCALE}"]) == 0
    assert "real | dream | error" in capsys.readouterr().out

    h, w = EpisodeStore.open(data_dir).metadata["frame_shape"][:2]
    panel_h, panel_w = h * SCALE + 4, w * SCALE + 4
    frames = imageio.mimread(gif)
    assert len(frames) == STEPS and frames[0].shape[:2] == (ROWS * (22 + panel_h), 3 * panel_w)
    reader = imageio.get_reader(mp4)
    assert reader.count_frames() == STEPS
    reader.close()

    # the header above every row names the action taken, in this env's own vocabulary
    model, _ = load_world_model(run_dir / "world_model.pt", "cpu")
    meanings = EpisodeStore.open(data_dir).metadata["action_meanings"]
    out = render_rollouts(model, data_dir, rows=ROWS, steps=STEPS, split="all", scale=1)
    assert len(out.captions) == STEPS and all(len(rows) == ROWS for rows in out.captions)
    named = [line[0].split("action ")[1].split("  reward")[0] for rows in out.captions for line in rows]
    assert all(n in meanings for n in named), (named, meanings)
    assert len(set(named)) > 1  # the recorded actions change, and so do the captions
