#!/usr/bin/env python3
"""Integral rendering speed: ms per frame, rays/s and matrix TFLOP/s, with the quality drift of each fast path.

Renders one Blender-style camera (near 2, far 6, lego's field of view) with a
trained checkpoint (``--ckpt``) or random weights of the paper's size (10x256, or
``--netdepth`` x ``--netwidth``). Each
variant is timed over ``--repeats`` frames after warm-up, and its frame is
compared with a float32 render of the same weights (PSNR of the variant
against it; null in the JSON where the frames are identical). Prints a table, then one JSON line.
"""
import argparse
import json
import math
import statistics
import sys
from dataclasses import replace
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from autoint_cli.autoint.fused import available as fused_available
from autoint_cli.config import ModelConfig, unflatten
from autoint_cli.models import SceneModel
from autoint_cli.render.renderer import Renderer, RenderSettings
from autoint_cli.runs.checkpoint import load_checkpoint
from autoint_cli.utils.fastpath import PRECISIONS
from autoint_cli.utils.metrics import psnr
from autoint_cli.volume.rays import camera_rays

from bench_common import bench_device, blender_view, device_label, positive_int, time_calls

VARIANTS = (
    "eager_fp32", "eager_tf32", "eager_bf16", "whole_tf32", "whole_bf16", "whole_bf16_autotune", "whole_bf16_cudagraphs",
    "whole_bf16_maxautotune", "fused_bf16", "whole_fused_bf16", "whole_fused_bf16_cudagraphs",
)
# Each variant is a RenderSettings of autoint-render: whole_*: the whole chunk renderer compiled (--compile), with
# the torch.compile mode of its suffix (--compile_mode); *fused*: Φ's MLP as the fused Triton kernel (--fused_mlp).
COMPILE_MODES = {"autotune": "max-autotune-no-cudagraphs", "cudagraphs": "reduce-overhead", "maxautotune": "max-autotune"}


def variant_settings(variant: str, n_sections: int, chunk: Optional[int]) -> RenderSettings:
    """The renderer settings a variant name stands for."""
    parts = variant.split("_")
    precision = next(p for p in PRECISIONS if p in parts)
    compile_mode = COMPILE_MODES.get(parts[-1], "default") if parts[0] == "whole" else None
    return RenderSettings(n_sections=n_sections, precision=precision, compile_mode=compile_mode, fused_mlp="fused" in parts, chunk=chunk)


def matmul_flops_per_eval(model: SceneModel) -> int:
    """2·in·out per Linear layer of the integral networks (the tangent is not computed when integrating)."""
    return sum(2 * m.weight.numel() for net in model.field.networks for m in net.modules() if hasattr(m, "weight") and m.weight is not None and m.weight.dim() == 2)


def measured_bf16_rate(device: torch.device) -> Optional[float]:
    """TFLOP/s of an 8192³ bf16 matrix product on this GPU (median of 10 after warm-up)."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    return 2 * 8192**3 / statistics.median(times) / 1e12


def print_profile(frame, device: torch.device, title: str, frames: int = 3, rows: int = 25) -> None:
    """The kernels that take the most device time over a few frames, as the torch profiler tabulates them."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(frames):
            frame()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(f"profile of {frames} frames: {title}")
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))


def frame_size(text: str) -> Tuple[int, int]:
    """``W`` (a square frame) or ``WxH`` -> (W, H); argparse reports anything else as an invalid value."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected W or WxH in pixels, got {text!r}")
    return int(parts[0]), int(parts[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="a trained checkpoint (default: random paper-size weights)")
    parser.add_argument("--resolution", type=frame_size, nargs="+", default=[(400, 400), (800, 800)],
                        help="frame sizes: W for a square frame, or WxH (fern at factor 8: 504x378)")
    parser.add_argument("--n_sections", type=int, nargs="+", default=[16, 8], help="N for each resolution, paired in order")
    parser.add_argument("--netdepth", type=positive_int, default=None, help="layers of each random network (default: the paper's 10; --quick: 3)")
    parser.add_argument("--netwidth", type=positive_int, default=None, help="hidden width of each random network (default: the paper's 256; --quick: 32)")
    parser.add_argument("--chunk", default="65536", help="rays per chunk, or auto (measured as autoint-render does)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--profile", nargs="+", choices=VARIANTS, default=[], help="also print the costliest kernels of these variants' frames (torch profiler)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke check: 32x32, small model, 2 repeats")
    args = parser.parse_args(argv)
    device = bench_device()
    if args.ckpt and (args.netdepth or args.netwidth):
        raise SystemExit("bench_render: --netdepth and --netwidth size random weights; a --ckpt brings its own")
    if args.ckpt:
        payload = load_checkpoint(args.ckpt)
        model_config = unflatten(payload["config"]).model
    else:
        payload = None
        model_config = ModelConfig()
    if args.quick:
        args.resolution, args.n_sections, args.repeats = [(32, 32)], [8], 2
        model_config = ModelConfig(netdepth=3, netwidth=32, sampler_depth=2, sampler_width=32)
        payload = None
    model_config = replace(model_config, netdepth=args.netdepth or model_config.netdepth, netwidth=args.netwidth or model_config.netwidth)
    pairs = list(zip(args.resolution, args.n_sections))

    name = device_label(device)
    # Rows are printed as they are measured, so that a run cut short still reports what it finished.
    print(f"{name}, torch {torch.__version__}, weights: {args.ckpt or 'random'}, {model_config.netdepth}x{model_config.netwidth}", flush=True)
    print(f"{'variant':<26}{'size':>9}{'N':>4}{'chunk':>8}{'ms/frame':>10}{'fps':>8}{'TFLOP/s':>9}{'PSNR vs fp32':>14}{'peak GiB':>10}", flush=True)
    rows = []
    for (width, height), n in pairs:
        size = f"{width}x{height}" if width != height else str(width)
        intrinsics, c2w = blender_view(width, device, height)
        rays = camera_rays(c2w, intrinsics, 2.0, 6.0)
        background = torch.ones(3, device=device)
        reference = None
        for variant in ["eager_fp32"] + [v for v in args.variants if v != "eager_fp32"]:
            if "fused" in variant and not fused_available(device):
                print(f"{variant:<26}skipped: the fused kernel needs Triton and a CUDA device", flush=True)
                continue
            torch.manual_seed(0)
            model = SceneModel(model_config)
            if payload is not None:
                model.load_state_dict(payload["model"])
            model.to(device).eval()
            # Each variant compiles from a clean slate: no graphs or dynamic-shape decisions carried over from the last.
            torch._dynamo.reset()
            renderer = Renderer(model, background, variant_settings(variant, n, None if args.chunk == "auto" else int(args.chunk)))
            if "fused" in variant and not renderer.fused:
                raise SystemExit(f"{variant}: the fused kernel was refused (see the log)")

            def frame():
                return renderer.render(rays)

            ms, out = time_calls(frame, device, args.repeats, warmup=2)
            chunk = renderer.chunk
            if variant in args.profile:
                print_profile(frame, device, f"{variant}, {width}x{height}, N={n}, chunk {chunk}")
            image = np.clip(out.rgb.float().cpu().numpy(), 0.0, 1.0)
            if variant == "eager_fp32":
                reference = image
            flops = width * height * (n + 1) * matmul_flops_per_eval(model)
            rows.append({
                "variant": variant, "resolution": size, "width": width, "height": height, "n_sections": n, "chunk": chunk, "ms_per_frame": ms,
                "fps": 1e3 / ms, "rays_per_sec": width * height / (ms / 1e3), "matrix_tflops": flops / (ms / 1e3) / 1e12,
                # None where the frame is bit-identical to the float32 render (PSNR infinite).
                "psnr_vs_fp32": None if math.isinf(psnr(image, reference)) else psnr(image, reference),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            })
            if variant == "eager_fp32" and variant not in args.variants:
                rows.pop()
            else:
                r = rows[-1]
                drift = "identical" if r["psnr_vs_fp32"] is None else format(r["psnr_vs_fp32"], ".2f")
                peak = "" if r["peak_gib"] is None else format(r["peak_gib"], ".2f")
                print(f"{variant:<26}{size:>9}{n:>4}{chunk:>8}{ms:>10.2f}{r['fps']:>8.1f}{r['matrix_tflops']:>9.1f}{drift:>14}{peak:>10}", flush=True)
    bf16 = measured_bf16_rate(device)
    print(f"measured bf16 matmul: {bf16 and round(bf16)} TFLOP/s", flush=True)
    print(json.dumps({"bench": "render", "device": name, "torch": torch.__version__, "weights": args.ckpt or "random",
                      "netdepth": model_config.netdepth, "netwidth": model_config.netwidth,
                      "bf16_matmul_tflops": bf16, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
