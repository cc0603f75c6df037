#!/usr/bin/env python3
"""How far a trained field's raw values stray behind surfaces, view by view (issue 26): what N's section means average in.

For every ``--pixel_step``-th pixel of each view of a split, the grad networks
are sampled at ``--samples`` evenly spaced points in each of the sampler's N
sections, and on the rays the integral renderer finds opaque (accumulated
opacity over ``--hit``) two figures are averaged:

* V, the colour variation (``volume.rendering.colour_variation``): the mean
  squared step of the raw colour between neighbouring samples;
* D, the negative density (``volume.rendering.negative_density``): the optical
  depth that raw σ below zero would cancel, spread over the ray.

Large V or D mean that a section reaching past a surface averages values that
no view ever constrained; ``smooth_rgb`` and ``negative_sigma`` penalise them
in training, and ``--refine`` in autoint-eval shows what they cost at render
time. Float32, eager, on the device given; prints one JSON line last.
"""
import argparse
import functools
import json
from pathlib import Path
from typing import Dict

import torch

from autoint_cli.models import RadianceField
from autoint_cli.render.views import split_poses, view_rays
from autoint_cli.runs.loader import LoadedRun, load_run
from autoint_cli.volume.rays import Rays
from autoint_cli.volume.rendering import colour_variation, negative_density, render_integral, render_training


def view_figures(run: LoadedRun, rays: Rays, samples: int, hit: float) -> Dict:
    """V and D averaged over the opaque rays of ``rays`` [n_rays], and how many there are."""
    model = run.model
    background = torch.tensor(run.scene.background, device=rays.origins.device)
    grad = functools.partial(RadianceField.evaluate, model.field.grad_networks())
    acc = render_integral(model.field.integral, model.sections, rays, background).acc[..., 0]
    raw = render_training(grad, model.sections, rays, background, samples).samples  # midpoints of `samples` strata a section
    opaque = acc > hit
    if not opaque.any():
        return {"opaque_rays": 0, "colour_variation": None, "negative_density": None}
    return {"opaque_rays": int(opaque.sum()), "colour_variation": float(colour_variation(raw)[opaque].mean()),
            "negative_density": float(negative_density(raw, rays.span)[opaque].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expdir", required=True, help="a trained run (logs/<expname>)")
    parser.add_argument("--split", default="val", choices=("test", "val", "train"))
    parser.add_argument("--testskip", type=int, default=None, help="blender: every k-th view of the split (default: the run's)")
    parser.add_argument("--max_views", type=int, default=None, help="only the first views of the split")
    parser.add_argument("--pixel_step", type=int, default=4, help="every k-th pixel of each row and column (default 4)")
    parser.add_argument("--samples", type=int, default=8, help="samples a section (default 8)")
    parser.add_argument("--hit", type=float, default=0.5, help="opacity from which a ray counts as opaque (default 0.5)")
    parser.add_argument("--chunk", type=int, default=2048, help="rays a pass (default 2048)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    run = load_run(Path(args.expdir), device, testskip=args.testskip)
    result = {"expdir": args.expdir, "step": run.step, **{k: v for k, v in vars(args).items() if k != "expdir"}, "views": []}
    with torch.no_grad():
        for index, c2w in enumerate(split_poses(run.scene, args.split)[:args.max_views]):
            rays = view_rays(run.scene, c2w.float(), device)[::args.pixel_step, ::args.pixel_step].reshape(-1)
            parts = [view_figures(run, rays[i:i + args.chunk], args.samples, args.hit) for i in range(0, rays.shape[0], args.chunk)]
            count = sum(p["opaque_rays"] for p in parts)
            row = {"view": index, "opaque_rays": count}
            for key in ("colour_variation", "negative_density"):
                row[key] = sum(p[key] * p["opaque_rays"] for p in parts if p["opaque_rays"]) / count if count else None
            result["views"].append(row)
            print(f"{args.split} view {index}: {count} opaque rays, V {row['colour_variation']}, D {row['negative_density']}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
