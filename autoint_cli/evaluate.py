"""Evaluation: quality and speed of the integral renderer at several N, beside the quadrature reference."""
import json
import platform
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .render.renderer import Renderer, RenderSettings
from .render.skipping import Skipping, SkippingRenderer
from .render.views import render_poses, split_poses
from .runs.loader import LoadedRun
from .utils.atomic import staged_files
from .utils.distributed import SINGLE, Distributed
from .utils.metrics import LPIPS, psnr, ssim
from .volume.rendering import QUADRATURE_SAMPLES


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _score(run: LoadedRun, split: str, views, lpips: LPIPS) -> Dict:
    targets = run.scene.images[run.scene.split(split)].numpy()
    per_image = []
    for index, (rgb, target, ms) in enumerate(zip(views.rgb, targets, views.ms_per_frame)):
        # Each view's time too: a mean alone hides one slow frame (a compile inside the timed loop).
        entry = {"view": index, "psnr": psnr(rgb, target), "ssim": ssim(rgb, target), "ms": ms}
        score = lpips(rgb, target)
        if score is not None:
            entry["lpips"] = score
        per_image.append(entry)
    psnrs = np.array([e["psnr"] for e in per_image])
    ms = float(np.mean(views.ms_per_frame))
    result = {
        "psnr": float(psnrs.mean()),
        "psnr_std": float(psnrs.std()),
        "ssim": float(np.mean([e["ssim"] for e in per_image])),
        "lpips": float(np.mean([e["lpips"] for e in per_image])) if lpips.model is not None else None,
        "ms_per_frame": ms,
        "rays_per_sec": run.scene.H * run.scene.W / (ms / 1e3),
        "frames_per_sec": views.frames_per_sec,
        "per_image": per_image,
    }
    if lpips.note:
        result["lpips_note"] = lpips.note
    return result


def evaluate(
    run: LoadedRun,
    device: torch.device,
    base: RenderSettings = RenderSettings(),
    n_sections: Sequence[int] = (8, 16, 32),
    quadrature_samples: int = QUADRATURE_SAMPLES,
    split: str = "test",
    max_views: Optional[int] = None,
    dist: Distributed = SINGLE,
    refine: Sequence[int] = (1,),
    skipping: Optional[Skipping] = None,
) -> Optional[Dict]:
    """Renders every view of ``split`` with the integral renderer at each N and each ``refine`` R (and the quadrature one
    at K) and scores it. R > 1 cuts ``base.refine_sections`` sections around each ray's surface in R each.

    ``base`` gives the fast paths (precision, compile mode, fused kernel,
    chunk) of every renderer. Timing covers rendering only: the first view is
    rendered once untimed, then each view is timed between device
    synchronisations (``ms_per_frame``); ``frames_per_sec`` is the whole
    split's rate, over all processes. Under several processes the views are
    shared out and rank 0 gets the metrics (the other ranks get None).
    ``skipping``: every frame skips empty space as autoint-view's do (both
    passes timed, the frames scored as they are); None: every pixel drawn.
    """
    poses = split_poses(run.scene, split)[:max_views]
    background = torch.tensor(run.scene.background, device=device)
    lpips = LPIPS(device) if dist.is_main else None
    settings = [base.replace(renderer="integral", n_sections=n, refine=r) for n in n_sections for r in refine]
    if quadrature_samples:
        settings.append(base.replace(renderer="quadrature", n_samples=quadrature_samples, refine=1))
    results: List[Dict] = []
    for setting in settings:
        views = render_poses(run.scene, poses, frame_renderer(Renderer(run.model, background, setting), skipping), dist=dist)
        if views is None:
            continue
        option = {"n_sections": setting.n_sections} if setting.renderer == "integral" else {"n_samples": setting.n_samples}
        if setting.refine > 1:
            option.update(refine=setting.refine, refine_sections=setting.refine_sections)
        results.append({"renderer": setting.renderer, **option, **_score(run, split, views, lpips)})
    if not dist.is_main:
        return None
    return {
        "scene": run.scene.name,
        "expname": run.config.run.expname,
        "step": run.step,
        "checkpoint": str(run.checkpoint),
        "split": split,
        "n_views": len(poses),
        "resolution": [run.scene.H, run.scene.W],
        "device": device_name(device),
        "torch": torch.__version__,
        "precision": base.precision,
        "processes": dist.world_size,
        "skip_empty": skipping is not None,
        "window_sections": skipping.window if skipping is not None else None,
        "whole_first_pass": skipping.whole_first_pass if skipping is not None else None,
        "results": results,
    }


def frame_renderer(renderer: Renderer, skipping: Optional[Skipping]):
    """What draws a view: the renderer itself, or with ``skipping`` the renderer skipping empty space."""
    return renderer if skipping is None else SkippingRenderer(renderer, skipping)


def label(result: Dict) -> str:
    if result["renderer"] == "integral" and result.get("refine", 1) > 1:
        return f"integral N={result['n_sections']}, {result['refine_sections']} refined x{result['refine']}"
    if result["renderer"] == "integral":
        return f"integral N={result['n_sections']}"
    return f"quadrature K={result['n_samples']}"


def metrics_table(metrics: Dict) -> str:
    """metrics.md: a table a person reads."""
    lines = [
        f"# {metrics['expname']}: {metrics['scene']}, step {metrics['step']}",
        "",
        f"{metrics['n_views']} {metrics['split']} views at {metrics['resolution'][1]}x{metrics['resolution'][0]}, "
        f"{metrics['device']}, torch {metrics['torch']}, {metrics['precision']} matrix products"
        + (f", {metrics['processes']} processes" if metrics.get("processes", 1) > 1 else "")
        + (f", empty space skipped (section windows of {metrics['window_sections'] or 'all N'})" if metrics.get("skip_empty") else ""),
        "",
        "| renderer | PSNR (dB) | ± std | SSIM | LPIPS | ms / frame | rays / s | frames / s (all) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in metrics["results"]:
        lpips = "n/a" if r["lpips"] is None else f"{r['lpips']:.4f}"
        lines.append(f"| {label(r)} | {r['psnr']:.2f} | {r['psnr_std']:.2f} | {r['ssim']:.4f} | {lpips} | {r['ms_per_frame']:.1f} | {r['rays_per_sec']:.3g} | {r['frames_per_sec']:.3g} |")
    notes = {r.get("lpips_note") for r in metrics["results"] if r.get("lpips_note")}
    if notes:
        lines += [""] + sorted(notes)
    return "\n".join(lines) + "\n"


def plot_tradeoff(metrics: Dict, path: Path) -> Path:
    """PSNR against ms per frame: one point per N (and per refined N), one for quadrature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    integral = [r for r in metrics["results"] if r["renderer"] == "integral" and r.get("refine", 1) == 1]
    refined = [r for r in metrics["results"] if r["renderer"] == "integral" and r.get("refine", 1) > 1]
    ax.plot([r["ms_per_frame"] for r in integral], [r["psnr"] for r in integral], "o-", label="integral (AutoInt)")
    if refined:
        ax.plot([r["ms_per_frame"] for r in refined], [r["psnr"] for r in refined], "^", label="integral, surface refined")
    for r in integral + refined:
        name = f"N={r['n_sections']}" + (f" x{r['refine']}" if r in refined else "")
        ax.annotate(name, (r["ms_per_frame"], r["psnr"]), textcoords="offset points", xytext=(5, -10))
    for r in metrics["results"]:
        if r["renderer"] == "quadrature":
            ax.plot([r["ms_per_frame"]], [r["psnr"]], "s", color="black", label=f"quadrature K={r['n_samples']}")
    ax.set_xscale("log")
    ax.set_xlabel("ms per frame")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{metrics['scene']}: {metrics['n_views']} {metrics['split']} views, {metrics['device']}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, format="png")  # told, not guessed: atomic writes go through a .tmp name
    plt.close(fig)
    return path


def write_metrics(metrics: Dict, out: Path) -> List[Path]:
    """metrics.json at ``out``, metrics.md and tradeoff.png beside it.

    Another name than metrics.json gives NAME.md and NAME_tradeoff.png, so
    that several evaluations can share a folder.
    """
    plot = out.parent / ("tradeoff.png" if out.stem == "metrics" else f"{out.stem}_tradeoff.png")
    table = out.with_suffix(".md")
    # The three are written in a staging folder and moved into place together: a full disk or Ctrl-C leaves the previous
    # metrics as they were, all three of them, never a new JSON beside an old table.
    with staged_files(out.parent) as staging:
        (staging / out.name).write_text(json.dumps(metrics, indent=2) + "\n")
        (staging / table.name).write_text(metrics_table(metrics))
        plot_tradeoff(metrics, staging / plot.name)
    return [out, table, plot]
