"""Score predictors on a probe suite (:mod:`worldsim.evaluation.probes`): loop closure and object permanence.

A **predictor** maps (context frames ``(C, h, w, 3)`` uint8, the ``C - 1`` actions between them, the
probe's ``T`` actions) to ``T`` predicted frames: the world model (:func:`world_model_predictor`),
the repeat-last baseline, or any fake. Every predictor gets the *same* real context, the last
``C`` real frames up to the probe's frame 0. Its timeline is the real one up to frame 0 and its own
predictions after; frame ``t`` of it is ``D[t]``, of the real env ``R[t]``. Per probe (formulas in
docs/consistency.md):

* **revisit** (every ``(i, j)`` of ``probe.returns``, loop length ``j - i``): PSNR and SSIM of
  ``D[j]`` against ``R[j]``, the sharpness ratio ``Σ|∇²D[j]| / Σ|∇²R[j]|``, and PSNR and SSIM of
  ``D[j]`` against ``D[i]`` (the dream's own earlier frame at that pose; *self* scores count only
  pairs with ``i >= 1``, both frames dreamed). **inside** the context window when ``j - i <= C``;
* **path**: PSNR of all ``D[1..T]`` against ``R[1..T]`` (a predictor that never moves is perfect at
  every return frame whose pose is the last context frame's, never on the path);
* **permanence**: IoU of the target colour's masks of ``D[r]`` and ``R[r]`` at the return ``r``,
  their area ratio, the IoU over the turn-back frames that show the object, and the share of hidden
  dreamed frames in which the object wrongly shows; **inside** when the probe's ``gap`` <= ``C``.

PSNR and sharpness are pooled over a group (one squared-error mean, one ratio of sums), IoU too
(Σ intersection / Σ union); SSIM is the mean over pairs. The tokenizer floor scores the real frames
passed through ``reconstruct`` (encode, decode) as if they were predicted. The headline scores also
get 95% intervals over scenes (:func:`scene_intervals`): a scene's probes share one world, so the
scene, not the probe, is the independent unit.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from worldsim.evaluation.probes import OCCLUDED_KINDS, ProbeSuite, PlayedProbe, colour_mask
from worldsim.io import atomic_write_json, atomic_write_with
from worldsim.metrics import laplacian_abs, psnr_from_mse, ssim

PredictFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
GROUP = {"permanence": "permanence", "walk_by": "occlusion"}  # score group of each occluded kind


@dataclass
class Predictor:
    name: str
    context_frames: int
    predict: PredictFn  # (context (C, h, w, 3) u8, context actions (C-1,), actions (T,)) -> (T, h, w, 3) u8


def predictor_inputs(played: PlayedProbe, context_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last ``C`` real frames up to frame 0, the actions between them, and the probe's actions."""
    o, C = played.origin, context_frames
    if not 1 <= C <= o + 1:
        raise ValueError(f"a context of {C} frames does not fit this probe ({o + 1} real frames up to frame 0); "
                         f"make the suite with SuiteConfig(context_frames>={C}).")
    acts = played.all_actions
    return played.frames[o - C + 1 : o + 1], acts[o - C + 1 : o], acts[o:]


def repeat_last() -> Predictor:
    return Predictor("repeat_last", 1, lambda ctx, _, acts: np.repeat(ctx[-1:], len(acts), axis=0))


def world_model_predictor(model, name: str = "model", seed: int = 0, sampling_steps: int | None = None,
                          context_limit: int | None = None, history: int | None = None) -> Predictor:
    """A :class:`~worldsim.models.world_model.WorldModel` rolled out from the real context (as
    world_model_eval does), with noise seeded from ``seed`` and the probe's content (order-independent).
    ``context_limit``: every generated frame sees only the last that many frames (the baseline of
    the same model with its context cut; it gets the same real context and the same noise).
    ``history``: how many real frames it is given (default: its context window); a model with pose
    memory keeps all of them in its memory, its attention still sees only the last ``C``."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def predict(ctx: np.ndarray, ctx_actions: np.ndarray, actions: np.ndarray) -> np.ndarray:
        key = zlib.crc32(ctx.tobytes() + np.asarray(actions, np.int64).tobytes())
        gen = torch.Generator(device).manual_seed(seed * 7919 + key)
        frames = torch.from_numpy(np.ascontiguousarray(ctx)).permute(0, 3, 1, 2)[None].to(device)  # (1, C, 3, h, w)
        latents = model.encode(frames)
        prev = model.prev_actions(torch.as_tensor(ctx_actions, dtype=torch.long, device=device)[None])
        acts = torch.as_tensor(actions, dtype=torch.long, device=device)[None]
        out = model.rollout_latents(latents, prev, acts, gen, sampling_steps, context_limit)
        return model.decode(out[0]).permute(0, 2, 3, 1).cpu().numpy()  # (T, h, w, 3)

    C = int(model.cfg.dit.context_frames)
    if history is not None and (history < C or not model.cfg.memory_span):
        raise ValueError(f"history={history}: only a model with pose memory takes more real frames than its "
                         f"context window ({C}).")
    return Predictor(name, C if history is None else int(history), predict)


def tokenizer_reconstruct(model) -> Callable[[np.ndarray], np.ndarray]:
    """Real frames (T, h, w, 3) u8 -> the same through the world model's tokenizer (encode, decode)."""
    device = next(model.parameters()).device

    def reconstruct(frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(device)
        return torch.cat([model.decode(model.encode(c)) for c in x.split(64)]).permute(0, 2, 3, 1).cpu().numpy()

    return reconstruct


# ----------------------------------------------------------------------------- per-probe scores
def _t(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (b, 3, h, w) uint8


def _se(a: np.ndarray, b: np.ndarray) -> float:
    return float((((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2).sum())


def score_probe(played: PlayedProbe, predicted: np.ndarray, window: int) -> dict[str, Any]:
    """Sums for pooling, for one probe and one predictor's ``predicted`` frames (T, h, w, 3)."""
    probe, T = played.probe, len(played.probe.actions)
    if predicted.shape != (T, *played.frames.shape[1:]) or predicted.dtype != np.uint8:
        raise ValueError(f"a predictor must return uint8 frames of shape {(T, *played.frames.shape[1:])}, "
                         f"got {predicted.dtype} {predicted.shape}.")
    dream = lambda t: predicted[t - 1] if t >= 1 else played.frame(t)  # noqa: E731
    real = played.frames[played.origin + 1 :]
    out: dict[str, Any] = {"path": {"se": _se(predicted, real), "n": float(real.size)}, "returns": []}
    for i, j in probe.returns:
        d, r, e = dream(j)[None], played.frame(j)[None], dream(i)[None]
        lap_d, lap_r = laplacian_abs(_t(d)).sum().item(), laplacian_abs(_t(r)).sum().item()
        out["returns"].append({
            "earlier": i, "later": j, "loop": j - i, "window": "inside" if j - i <= window else "beyond",
            "n": float(r.size), "se_real": _se(d, r), "ssim_real": float(ssim(_t(d), _t(r))[0]),
            "lap_pred": lap_d, "lap_true": lap_r, "se_self": _se(d, e), "ssim_self": float(ssim(_t(d), _t(e))[0]),
            "self_dreamed": i >= 1})
    if probe.kind in OCCLUDED_KINDS:  # permanence (turned away) or occlusion (walk_by: a wall hid it)
        color = probe.params["color"]
        (_, ret), = probe.returns
        lo, hi = probe.params["hidden"]
        md, mr = colour_mask(predicted, color), colour_mask(real, color)  # (T, h, w): frames 1..T
        back = [t for t in range(hi + 1, ret + 1) if mr[t - 1].any()]
        hidden = list(range(max(lo, 1), hi + 1))  # dreamed hidden frames (frame 0 is real)
        out[GROUP[probe.kind]] = {
            "k": probe.params["k"], "gap": probe.params["gap"], "window": "inside" if probe.params["gap"] <= window else "beyond",
            "inter": int((md[ret - 1] & mr[ret - 1]).sum()), "union": int((md[ret - 1] | mr[ret - 1]).sum()),
            "area_pred": int(md[ret - 1].sum()), "area_true": int(mr[ret - 1].sum()),
            "back_inter": int(sum((md[t - 1] & mr[t - 1]).sum() for t in back)),
            "back_union": int(sum((md[t - 1] | mr[t - 1]).sum() for t in back)),
            "hidden_frames": len(hidden), "hidden_shown": int(sum(md[t - 1].any() for t in hidden))}
    return out


# ----------------------------------------------------------------------------- pooling
def _pool_returns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    selfs = [r for r in rows if r["self_dreamed"]]
    n = sum(r["n"] for r in rows)
    return {
        "pairs": len(rows), "window": sorted({r["window"] for r in rows}),
        "psnr": psnr_from_mse(sum(r["se_real"] for r in rows) / n), "ssim": float(np.mean([r["ssim_real"] for r in rows])),
        "sharpness": sum(r["lap_pred"] for r in rows) / max(sum(r["lap_true"] for r in rows), 1e-12),
        "self_psnr": psnr_from_mse(sum(r["se_self"] for r in selfs) / sum(r["n"] for r in selfs)) if selfs else None,
        "self_ssim": float(np.mean([r["ssim_self"] for r in selfs])) if selfs else None,
    }


def _pool_permanence(rows: list[dict[str, Any]]) -> dict[str, Any]:
    union, back_union, hidden = (sum(r[k] for r in rows) for k in ("union", "back_union", "hidden_frames"))
    return {
        "probes": len(rows), "inside": sum(r["window"] == "inside" for r in rows),
        "gap": [min(r["gap"] for r in rows), max(r["gap"] for r in rows)],
        "iou": sum(r["inter"] for r in rows) / union if union else 1.0,
        "iou_mean": float(np.mean([r["inter"] / r["union"] if r["union"] else 1.0 for r in rows])),
        "area_ratio": sum(r["area_pred"] for r in rows) / max(sum(r["area_true"] for r in rows), 1),
        "turn_back_iou": sum(r["back_inter"] for r in rows) / back_union if back_union else None,
        "hidden_shown": sum(r["hidden_shown"] for r in rows) / hidden if hidden else None,
    }


def _summarise(records: list[tuple[PlayedProbe, dict[str, Any]]]) -> dict[str, Any]:
    by_length, by_kind, by_window = defaultdict(list), defaultdict(list), defaultdict(list)
    path = defaultdict(lambda: [0.0, 0.0])
    occluded = {g: (defaultdict(list), defaultdict(list)) for g in GROUP.values()}  # group -> by k, by window
    for played, rec in records:
        kind = played.probe.kind
        for r in rec["returns"]:
            if kind not in OCCLUDED_KINDS:
                by_length[r["loop"]].append(r)
                by_kind[(kind, r["loop"])].append(r)
                by_window[r["window"]].append(r)
        path[kind][0] += rec["path"]["se"]
        path[kind][1] += rec["path"]["n"]
        for group, (by_k, by_w) in occluded.items():
            if group in rec:
                p = {**rec[group], "psnr_return": rec["returns"][0]}
                by_k[p["k"]].append(p)
                by_w[p["window"]].append(p)
    kinds: dict[str, dict[str, Any]] = defaultdict(dict)
    for (kind, loop), rows in sorted(by_kind.items()):
        kinds[kind][str(loop)] = _pool_returns(rows)
    return {
        "revisit": {"by_loop_length": {str(L): _pool_returns(by_length[L]) for L in sorted(by_length)},
                    "by_kind": dict(kinds), **{w: _pool_returns(by_window[w]) for w in ("inside", "beyond") if by_window[w]}},
        "path_psnr": {k: psnr_from_mse(se / n) for k, (se, n) in sorted(path.items())},
        **{group: {"by_k": {str(k): {**_pool_permanence(by_k[k]),
                                     "psnr_return": _pool_returns([p["psnr_return"] for p in by_k[k]])["psnr"]}
                            for k in sorted(by_k)},
                   **{w: _pool_permanence(by_w[w]) for w in ("inside", "beyond") if by_w[w]}}
           for group, (by_k, by_w) in occluded.items() if by_k or group == "permanence"},
    }


BOOTSTRAP_RESAMPLES = 2000


def scene_intervals(probe_scores: list[dict[str, Any]], scenes: int, seed: int = 0) -> dict[str, Any]:
    """95% percentile-bootstrap intervals over scenes for one predictor's headline scores: revisit
    PSNR and permanence IoU inside / beyond the window, and IoU per turn-away ``k``.

    ``probe_scores`` are :func:`score_probe` records in suite order (scene after scene, each holding
    the same number of probes); every resample draws ``scenes`` scenes with replacement (seeded) and
    pools their sums as the point estimate does. ``{}`` for fewer than 2 scenes."""
    if scenes < 2 or not probe_scores or len(probe_scores) % scenes:
        return {}
    per_scene = len(probe_scores) // scenes
    sums: dict[str, np.ndarray] = {}  # name -> (scenes, 2): numerator, denominator

    def add(name: str, scene: int, num: float, den: float) -> None:
        sums.setdefault(name, np.zeros((scenes, 2)))[scene] += (num, den)

    for n, rec in enumerate(probe_scores):
        scene = n // per_scene
        groups = [g for g in GROUP.values() if g in rec]
        for g in groups:
            p = rec[g]
            for name in (f"{g}_iou/{p['window']}", f"{g}_iou/k={p['k']}"):
                add(name, scene, p["inter"], p["union"])
        if not groups:
            for r in rec["returns"]:
                add(f"revisit_psnr/{r['window']}", scene, r["se_real"], r["n"])
    picks = np.random.default_rng(seed).integers(0, scenes, (BOOTSTRAP_RESAMPLES, scenes))
    out: dict[str, Any] = {"scenes": scenes, "resamples": BOOTSTRAP_RESAMPLES}
    for name, s in sorted(sums.items()):
        num, den = s[picks, 0].sum(1), s[picks, 1].sum(1)
        ok = den > 0
        if not ok.any():
            continue
        values = num[ok] / den[ok]
        if name.startswith("revisit_psnr"):
            values = np.array([psnr_from_mse(v) for v in values])
        out[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
    return out


def score_suite(suite: ProbeSuite, predictors: list[Predictor], reconstruct: Callable[[np.ndarray], np.ndarray] | None = None,
                context_window: int | None = None, keep_probes: bool = True) -> dict[str, Any]:
    """Score every predictor (and the tokenizer floor, given ``reconstruct``) on every probe.

    ``context_window`` (default: the first predictor's context, the model under test) decides which
    loops count as inside the window, for every predictor alike, so the tables line up."""
    if not predictors and reconstruct is None:
        raise ValueError("give at least one predictor (e.g. repeat_last()) or a reconstruct function.")
    window = int(context_window if context_window is not None else predictors[0].context_frames)
    records: dict[str, list] = {p.name: [] for p in predictors}
    floor: list = []
    for played in suite.probes:
        for p in predictors:
            ctx, ctx_actions, actions = predictor_inputs(played, p.context_frames)
            records[p.name].append((played, score_probe(played, np.asarray(p.predict(ctx, ctx_actions, actions)), window)))
        if reconstruct is not None:
            floor.append((played, score_probe(played, np.asarray(reconstruct(played.frames[played.origin + 1 :])), window)))
    if reconstruct is not None:
        records["tokenizer_floor"] = floor
    result: dict[str, Any] = {"suite": suite.describe(), "context_window": window,
                              "predictors": {p.name: {"context_frames": p.context_frames} for p in predictors},
                              "scores": {name: {**_summarise(recs), "intervals": scene_intervals([r for _, r in recs], suite.count)}
                                         for name, recs in records.items()}}
    if reconstruct is not None:
        result["predictors"]["tokenizer_floor"] = {"context_frames": None}
    if keep_probes:
        result["probes"] = [{**played.probe.to_dict(), "scores": {name: recs[n][1] for name, recs in records.items()}}
                            for n, played in enumerate(suite.probes)]
    return result


# ----------------------------------------------------------------------------- writing
PLOT_CAP_DB = 60.0  # an exact prediction has infinite PSNR: drawn at this height


def plot_consistency(result: dict[str, Any], path: str | Path) -> Path:
    """Return PSNR / SSIM / self-consistency vs loop length and permanence (or occlusion) IoU vs frames
    hidden, one line per predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("revisit", "psnr", "return PSNR vs real (dB)"), ("revisit", "ssim", "return SSIM vs real"),
              ("revisit", "self_psnr", "return PSNR vs dream's earlier frame (dB)"),
              ("permanence", "iou", "permanence: mask IoU at return"))
    if any("occlusion" in s for s in result["scores"].values()):
        panels = panels[:3] + (("occlusion", "iou", "walk-by (a wall hides it): mask IoU at return"),)
        if any(s["permanence"]["by_k"] for s in result["scores"].values()):
            panels += (("permanence", "iou", "permanence: mask IoU at return"),)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
    C = result["context_window"]
    for ax, (part, metric, title) in zip(axes, panels):
        for name, scores in result["scores"].items():
            groups = scores.get(part, {}).get("by_loop_length" if part == "revisit" else "by_k", {})
            xs = [int(x) for x in groups if groups[x].get(metric) is not None]
            ys = [min(groups[str(x)][metric], PLOT_CAP_DB) for x in xs]
            ax.plot(xs, ys, "o-", label=name.replace("_", " "), ms=4)
        if part == "revisit":  # permanence is inside by its gap (about k + 7), not by k
            ax.axvline(C, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("loop length (steps)" if part == "revisit" else "k (frames the object is hidden)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"probe suite v{result['suite']['version']} ({result['suite']['fingerprint']}); dashed: context window {C}",
                 fontsize=9)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return Path(path)


def write_results(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    return (atomic_write_json(out_dir / "consistency.json", result),
            plot_consistency(result, out_dir / "consistency.png"))


# ----------------------------------------------------------------------------- the benchmark
def bench_consistency(model, ckpt: dict[str, Any], out_dir: str | Path | None, seed: int = 0, count: int = 4,
                      sampling_steps: int | None = None, precision: str = "auto") -> dict[str, Any]:
    """The probe suite for a MiniWorld checkpoint (its task, frame size and context), scored for the
    model beside repeat-last and the tokenizer floor; JSON and plot written to ``out_dir``."""
    from worldsim.evaluation.probes import SuiteConfig, make_suite
    from worldsim.runtime import autocast, resolve_precision

    env = ckpt.get("env") or {}
    if env.get("env") != "miniworld":
        raise ValueError(f"the consistency probes run on MiniWorld; this checkpoint was trained on {env.get('env')!r}. "
                         "Train a world model on env=miniworld first.")
    h, w = ckpt["config"]["frame_size"]
    if h != w:
        raise ValueError(f"the probe suite renders square frames; the checkpoint works at {h}×{w}.")
    C = int(model.cfg.dit.context_frames)
    cfg = SuiteConfig.for_task(env.get("env_kwargs", {}).get("task", SuiteConfig.task), frame_size=int(h),
                               context_frames=max(SuiteConfig.context_frames, C))
    suite = make_suite(seed, count, cfg)
    device = next(model.parameters()).device
    history = cfg.context_frames if model.cfg.memory_span else None  # pose memory: every real frame of the prefix
    with autocast(device, precision):
        predictors = [world_model_predictor(model, seed=seed, sampling_steps=sampling_steps, history=history)]
        if C > 1:  # how much of its context the model uses: the same model seeing one frame only (memory kept)
            predictors.append(world_model_predictor(model, "model_context1", seed, sampling_steps, context_limit=1,
                                                    history=history))
        result = score_suite(suite, predictors + [repeat_last()], reconstruct=tokenizer_reconstruct(model),
                             context_window=C)
    result["checkpoint_step"] = ckpt.get("step")
    result["precision"] = resolve_precision(precision, device)
    result["sampling_steps"] = sampling_steps or model.cfg.edm.sampling_steps
    result["memory_span"] = int(model.cfg.memory_span)
    if out_dir is not None:
        write_results(result, out_dir)
    return result


def consistency_markdown(result: dict[str, Any]) -> str:
    """The headline table: revisit PSNR / SSIM and permanence IoU, inside and beyond the window."""
    fmt = lambda v, f: "–" if v is None else f.format(v)  # noqa: E731
    lines = [f"probe suite v{result['suite']['version']} ({result['suite']['fingerprint']}), "
             f"{result['suite']['num_probes']} probes, context window {result['context_window']}", "",
             "| predictor | revisit PSNR in / beyond | revisit SSIM in / beyond | self PSNR beyond | IoU in / beyond "
             "| 95% interval over scenes: PSNR beyond, IoU beyond |",
             "|---|---|---|---|---|---|"]
    occlusion = any("occlusion" in s for s in result["scores"].values())
    if occlusion:  # walk_by probes: a wall hid the object
        lines[2], lines[3] = lines[2] + " walk-by IoU in / beyond [95% beyond] |", lines[3] + "---|"
    ci = lambda v, f: "–" if not v else f"[{f.format(v[0])}, {f.format(v[1])}]"  # noqa: E731
    for name, s in result["scores"].items():
        rv, pm = s["revisit"], s["permanence"]
        get = lambda part, w, k: part.get(w, {}).get(k)  # noqa: E731
        lines.append(f"| {name} | {fmt(get(rv, 'inside', 'psnr'), '{:.1f}')} / {fmt(get(rv, 'beyond', 'psnr'), '{:.1f}')} "
                     f"| {fmt(get(rv, 'inside', 'ssim'), '{:.3f}')} / {fmt(get(rv, 'beyond', 'ssim'), '{:.3f}')} "
                     f"| {fmt(get(rv, 'beyond', 'self_psnr'), '{:.1f}')} "
                     f"| {fmt(get(pm, 'inside', 'iou'), '{:.2f}')} / {fmt(get(pm, 'beyond', 'iou'), '{:.2f}')} "
                     f"| {ci(s.get('intervals', {}).get('revisit_psnr/beyond'), '{:.1f}')}, "
                     f"{ci(s.get('intervals', {}).get('permanence_iou/beyond'), '{:.2f}')} |"
                     + (f" {fmt(get(s.get('occlusion', {}), 'inside', 'iou'), '{:.2f}')} / "
                        f"{fmt(get(s.get('occlusion', {}), 'beyond', 'iou'), '{:.2f}')} "
                        f"{ci(s.get('intervals', {}).get('occlusion_iou/beyond'), '{:.2f}')} |" if occlusion else ""))
    return "\n".join(lines)
