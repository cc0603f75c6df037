#!/usr/bin/env python3
"""Training throughput: rays per second of the product's training step (autoint_cli.train.TrainStep).

The very step autoint-train takes: the training renderer, the loss, the
backward in sub-batches of ``--chunk`` rays, the device-side NaN/inf check and
fused Adam. Random pixels of random images on a Blender-style camera (speed does
not depend on the content), the paper's N = 32, M = 4 and 10x256 networks unless
told otherwise. Each variant: warm-up steps (compilation included), then timed
steps. Prints a table, then one JSON line.
"""
import argparse
import json
import sys
from dataclasses import replace
from typing import Optional, Sequence

import torch

from autoint_cli.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from autoint_cli.models import SceneModel
from autoint_cli.train import Batch, TrainStep, setup_state
from autoint_cli.volume.rays import pixel_rays

from bench_common import bench_device, blender_view, device_label, positive_int, time_calls

# <how compiled>_<precision>[_shared_trunk]: eager (no compile), compiled (torch.compile's default mode over each sub-batch's
# loss and backward), cudagraph (its reduce-overhead mode: the same graphs replayed as CUDA graphs).
VARIANTS = ("eager_tf32", "compiled_tf32", "compiled_bf16", "compiled_tf32_shared_trunk", "compiled_bf16_shared_trunk",
            "cudagraph_bf16_shared_trunk")
COMPILE_MODE = {"eager": None, "compiled": "default", "cudagraph": "reduce-overhead"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N_rand", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=4096, help="rays per forward/backward sub-batch (the config key chunk)")
    parser.add_argument("--n_sections", type=int, default=32)
    parser.add_argument("--samples_per_section", type=int, default=4)
    parser.add_argument("--netdepth", type=positive_int, default=None, help="layers of each network (default: the paper's 10; --quick: 3)")
    parser.add_argument("--netwidth", type=positive_int, default=None, help="hidden width (default: the paper's 256; --quick: 32)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="CPU smoke check: small model and batch")
    args = parser.parse_args(argv)
    device = bench_device()
    base = ModelConfig(n_sections=args.n_sections, samples_per_section=args.samples_per_section)
    if args.quick:
        base = replace(base, netdepth=3, netwidth=32, sampler_depth=2, sampler_width=32, n_sections=8, samples_per_section=2)
        args.N_rand, args.chunk, args.steps, args.warmup = 256, 256, 3, 1
        args.variants = [v for v in args.variants if v.startswith("eager")] or ["eager_tf32"]
    base = replace(base, netdepth=args.netdepth or base.netdepth, netwidth=args.netwidth or base.netwidth)
    size = 400
    intrinsics, c2w = blender_view(size, device)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.rand(size, size, 3, device=device, generator=generator)

    rows = []
    for variant in args.variants:
        config = replace(base, shared_trunk=variant.endswith("shared_trunk"))
        precision = "bf16" if "bf16" in variant else "tf32"
        compile_mode = COMPILE_MODE[variant.split("_")[0]]
        run = RunConfig(expname="bench", N_rand=args.N_rand, chunk=args.chunk, precision=precision, compile=compile_mode is not None,
                        compile_mode=compile_mode or "default")
        torch.manual_seed(0)
        state = setup_state(TrainConfig(DataConfig(datadir="unused"), config, run), SceneModel(config), device, None)
        train_step = TrainStep(state.model, torch.ones(3, device=device), run.precision, compile_mode, run.chunk)
        jitter_shape = (args.N_rand, config.n_sections, config.samples_per_section)

        def step():
            rows_, cols_ = (torch.randint(0, size, (args.N_rand,), device=device, generator=generator) for _ in range(2))
            rays = pixel_rays(c2w, rows_, cols_, intrinsics, 2.0, 6.0)
            jitter = torch.rand(jitter_shape, device=device, generator=generator)
            return train_step(state, Batch(rays, images[rows_, cols_], jitter, args.N_rand)).loss

        ms, _ = time_calls(step, device, args.steps, args.warmup)
        seconds = ms / 1e3
        rows.append({
            "variant": variant, "N_rand": args.N_rand, "chunk": args.chunk, "n_sections": config.n_sections,
            "samples_per_section": config.samples_per_section, "netdepth": config.netdepth, "netwidth": config.netwidth,
            "shared_trunk": config.shared_trunk, "ms_per_step": seconds * 1e3,
            "rays_per_sec": args.N_rand / seconds, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        })
    name = device_label(device)
    print(f"{name}, torch {torch.__version__}, N = {base.n_sections}, M = {base.samples_per_section}, {base.netdepth}x{base.netwidth}, {args.N_rand} rays/step")
    print(f"{'variant':<28}{'ms/step':>9}{'rays/s':>10}{'peak GiB':>10}")
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        print(f"{r['variant']:<28}{r['ms_per_step']:>9.1f}{r['rays_per_sec']:>10.0f}{peak:>10}")
    print(json.dumps({"bench": "train", "device": name, "torch": torch.__version__, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
