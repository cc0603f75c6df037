#!/usr/bin/env python3
"""What autoint-view's section windows (``--window_sections K``) save and change, view by view (issue 18).

For a view of a trained run (``--expdir``) at ``--height`` lines and N
sections, the skipped render's first pass (one ray per ``--block`` ×
``--block`` pixels) gives each ray its weights over the N sections; the run of
sections it needs leaves out at most half an 8-bit level at each end
(``frames.section_window``). A pixel of the full pass is drawn on K sections
where its 3 × 3 blocks' runs span at most K (``frames.pixel_windows``), with
Φ at K + 1 posts instead of N + 1.

Reports, per view and K: the share of the full pass's pixels drawn on K
sections, the Φ evaluations (posts) of the full pass against N + 1 each, and
the frame against the same skipped frame without windows (largest difference
in 8-bit levels, PSNR), and the milliseconds of each frame, once each. Eager,
at ``--precision``, on the device given: autoint-view's compiled speed is
bench_viewer's to measure. Prints one JSON line last.
"""
import argparse
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from autoint_cli.render.media import to8b
from autoint_cli.render.renderer import Renderer, RenderSettings
from autoint_cli.render.views import timed, view_rays
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.camera_path import vertical_fov
from autoint_cli.utils.metrics import psnr
from autoint_cli.render.skipping import first_pass, pixel_windows, render_skipping_empty
from autoint_cli.viewer.frames import viewer_intrinsics


def study_view(renderer: Renderer, rays, args) -> List[Dict]:
    """One row per K for the rays [H, W] of a view."""
    coarse, mask = first_pass(renderer, rays, args.block, "rgb", keep_weights=True)
    todo = mask.clone()
    todo[(slice(args.block // 2, None, args.block),) * 2] = False
    out, skipped_ms = timed(lambda: render_skipping_empty(renderer, rays, args.block, by="rgb"), rays.origins.device)
    skipped = to8b(out.rgb).astype(np.float64)
    rows = []
    for kept in args.kept:
        _, fits = pixel_windows(coarse.weights, tuple(rays.shape), args.block, kept)
        share = float((fits & todo).sum()) / max(1, int(todo.sum()))
        out, windowed_ms = timed(lambda: render_skipping_empty(renderer, rays, args.block, by="rgb", window=kept), rays.origins.device)
        windowed = to8b(out.rgb).astype(np.float64)
        rows.append({"sections_kept": kept, "pixels_in_full_pass": float(todo.float().mean()), "share_windowed": share,
                     "posts_vs_all": (share * (kept + 1) + (1 - share) * (args.n_sections + 1)) / (args.n_sections + 1),
                     "max_diff_levels": int(np.abs(windowed - skipped).max()),
                     "psnr_vs_unwindowed": psnr(windowed / 255.0, skipped / 255.0),
                     "ms_unwindowed": skipped_ms, "ms_windowed": windowed_ms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expdir", required=True, help="a trained run (logs/<expname>)")
    parser.add_argument("--height", type=int, default=320, help="lines of the square view (default 320)")
    parser.add_argument("--n_sections", type=int, default=8)
    parser.add_argument("--block", type=int, default=4, help="pixels a side of the first pass's blocks (autoint-view's: 4)")
    parser.add_argument("--kept", type=int, nargs="+", default=[2, 3, 4], help="window lengths K to try")
    parser.add_argument("--views", type=int, nargs="+", default=[7, 20], help="indices of the scene's path views")
    parser.add_argument("--precision", default="fp32", help="the renderer's precision (default fp32)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    run = load_run(Path(args.expdir), device)
    renderer = Renderer(run.model, torch.tensor(run.scene.background, device=device),
                        RenderSettings(n_sections=args.n_sections, precision=args.precision))
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), 1.0, args.height)
    result = {"expdir": args.expdir, "step": run.step, **{k: v for k, v in vars(args).items() if k != "expdir"}, "views": {}}
    for view in args.views:
        rays = view_rays(run.scene, run.scene.render_c2w[view].float(), device, camera)
        result["views"][view] = rows = study_view(renderer, rays, args)
        for row in rows:
            print(f"view {view}, K = {row['sections_kept']}: {100 * row['share_windowed']:.1f}% of the full pass on K sections, "
                  f"posts {100 * row['posts_vs_all']:.1f}% of N + 1 each, largest difference {row['max_diff_levels']} levels "
                  f"({row['psnr_vs_unwindowed']:.1f} dB) against the frame without windows; {row['ms_windowed']:.0f} ms against "
                  f"{row['ms_unwindowed']:.0f}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
