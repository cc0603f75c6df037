#!/usr/bin/env python3
"""autoint-view's fast frames against plain ones on this device, and a new N compiled while frames go on (issue 18).

Builds the viewer's FrameRenderer for a trained run (``--expdir``) as
autoint-view does (``--compile``, ``--cuda_graphs``, section windows of
``--window_sections``, background warm-up) and checks two things:

1. Its frames (empty space skipped, windows on) along the scene's path, every
   ``--every``-th view, against an eager renderer's frames with every pixel on
   all N sections: the lowest PSNR and the largest difference in 8-bit levels.
2. A first frame at ``--new_n`` sections: how long its renderer takes to
   compile and capture on the warm-up thread, how many frames the eager
   stand-in draws meanwhile and at what speed, the speed after the hand-over,
   and how far the handed-over frame is from the stand-in's.

Prints one JSON line last.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from autoint_cli.config import SpeedConfig, ViewConfig
from autoint_cli.render.renderer import render_settings
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.camera_path import vertical_fov
from autoint_cli.utils.metrics import psnr
from autoint_cli.viewer.frames import FrameRenderer, viewer_intrinsics

from bench_common import bench_device, device_label


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """PSNR (dB) and largest difference (levels) of two uint8 images."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return {"psnr": psnr(a / 255.0, b / 255.0), "max_diff_levels": int(np.abs(a - b).max())}


def against_plain(frames: FrameRenderer, plain: FrameRenderer, poses: np.ndarray, camera) -> dict:
    """The viewer's skipped, windowed frames against plain full ones along ``poses``: the worst PSNR and difference."""
    rows = [compare(frames.render(c2w, camera, skip_empty=True)[0], plain.render(c2w, camera)[0]) for c2w in poses]
    return {"views": len(rows), "psnr_min": min(r["psnr"] for r in rows), "max_diff_levels": max(r["max_diff_levels"] for r in rows)}


def new_n(frames: FrameRenderer, c2w: np.ndarray, camera, n_sections: int, timeout: float) -> dict:
    """Frames at an N not drawn before, while its renderer warms up on its own thread and after it takes over."""
    start = time.perf_counter()
    stand_in, _ = frames.render(c2w, camera, n_sections=n_sections, skip_empty=True)
    during = []
    while frames.warming(n_sections) and time.perf_counter() - start < timeout:
        during.append(frames.render(c2w, camera, n_sections=n_sections, skip_empty=True)[1])
    seconds = time.perf_counter() - start
    after = [frames.render(c2w, camera, n_sections=n_sections, skip_empty=True) for _ in range(10)]
    return {"n_sections": n_sections, "warm_up_seconds": seconds, "still_warming": frames.warming(n_sections),
            "frames_meanwhile": len(during), "ms_meanwhile_median": float(np.median(during)) if during else None,
            "ms_after_median": float(np.median([ms for _, ms in after])), "after_vs_stand_in": compare(after[-1][0], stand_in)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expdir", required=True, help="a trained run (logs/<expname>)")
    parser.add_argument("--height", type=int, default=800, help="lines of the square frames (default 800)")
    parser.add_argument("--n_sections", type=int, default=8, help="N of the frames compared (default 8)")
    parser.add_argument("--new_n", type=int, default=12, help="the N first drawn while the viewer runs (default 12)")
    parser.add_argument("--window_sections", type=int, default=ViewConfig.window_sections)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--compile", action="store_true", help="torch.compile the renderer (autoint-view's default on CUDA)")
    parser.add_argument("--cuda_graphs", action="store_true", help="CUDA graphs (autoint-view's default on CUDA)")
    parser.add_argument("--every", type=int, default=5, help="compare every this many path views (default 5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the new N's renderer")
    args = parser.parse_args()
    device = bench_device()
    run = load_run(Path(args.expdir), device)
    speed = SpeedConfig(precision=args.precision, compile=args.compile, fused_mlp=True, cuda_graphs=args.cuda_graphs)
    frames = FrameRenderer(run, render_settings(speed, run.config.run.precision, n_sections=args.n_sections), device,
                           warm_in_background=True, window=args.window_sections or None)
    eager = SpeedConfig(precision=args.precision, compile=False, fused_mlp=True, cuda_graphs=False)
    plain = FrameRenderer(run, render_settings(eager, run.config.run.precision, n_sections=args.n_sections), device)
    result = {"device": device_label(device), "torch": torch.__version__, "step": run.step, **vars(args)}
    result["warm_up_seconds"] = frames.warm_up(args.height) if frames.pieces else 0.0
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), 1.0, args.height)
    poses = run.scene.render_c2w.double().numpy()
    result["against_plain"] = against_plain(frames, plain, poses[::args.every], camera)
    result["new_n_frames"] = new_n(frames, poses[0], camera, args.new_n, args.timeout)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
