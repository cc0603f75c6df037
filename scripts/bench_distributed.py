"""Scaling over GPUs: training rays/s and rendering frames/s with 1 and K processes under torchrun.

Runs the real commands (``torchrun -m autoint_cli train|render``) and reads the
figures they report, so what is measured is what users run:

    python scripts/bench_distributed.py --config configs/lego.txt --processes 1 2 \\
        --expdir logs/lego_shared_fast

Training: ``--steps`` steps with a rays/s line every ``--print_every``; the
first line (warm-up) is dropped and the median of the rest is reported.
Rendering (with ``--expdir``): the camera path of a trained run; frames/s is
all frames over the wall time of all processes, gathering included.
A JSON summary is the last line printed.
"""
import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

RAYS_PER_SEC = re.compile(r"step (\d+) loss \S+ psnr \S+ rays/s (\d+)")
FRAMES_PER_SEC = re.compile(r"([\d.e+]+) frames/s in all")


def torchrun(processes: int, args) -> str:
    """Runs ``autoint_cli`` under torchrun; returns stdout + stderr, or exits with the failure's tail."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "autoint_cli", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_distributed: {' '.join(args[:1])} with {processes} processes failed:\n{done.stderr[-4000:]}")
    return done.stdout + done.stderr


def train_rays_per_sec(processes: int, config: str, steps: int, print_every: int, basedir: Path, extra) -> float:
    out = torchrun(processes, [
        "train", "--config", config, "--basedir", str(basedir), "--expname", f"bench_{processes}", "--no_reload", "true",
        "--n_iters", str(steps), "--i_print", str(print_every), "--quiet", "true",
        "--i_img", str(10 * steps), "--i_weights", str(10 * steps), "--i_testset", "0", "--i_video", "0", *extra,
    ])
    rates = [float(m.group(2)) for m in RAYS_PER_SEC.finditer(out)]
    if len(rates) < 2:
        sys.exit(f"bench_distributed: too few rays/s lines in the training log (raise --steps):\n{out[-2000:]}")
    return statistics.median(rates[1:])


def render_frames_per_sec(processes: int, expdir: str, ckpt, out_dir: Path, extra) -> float:
    args = ["render", "--expdir", expdir, "--split", "path", "--video", "false", "--out", str(out_dir / f"render_{processes}"), *extra]
    if ckpt:
        args += ["--ckpt", ckpt]
    match = FRAMES_PER_SEC.search(torchrun(processes, args))
    if match is None:
        sys.exit("bench_distributed: the render command did not report frames/s")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="training config")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts; the first is the baseline")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--print_every", type=int, default=10)
    parser.add_argument("--train_args", default="", help="more autoint-train flags, one quoted string, e.g. '--compile false'")
    parser.add_argument("--expdir", default=None, help="a trained run to time rendering on (skipped without)")
    parser.add_argument("--ckpt", default=None, help="its checkpoint file (default: the latest)")
    parser.add_argument("--render_args", default="", help="more autoint-render flags, one quoted string, e.g. '--precision bf16'")
    parser.add_argument("--device", default="auto", help="passed to both commands (auto: cuda:LOCAL_RANK under torchrun when CUDA is present)")
    args = parser.parse_args()
    if torch.cuda.is_available() and max(args.processes) > torch.cuda.device_count():
        sys.exit(f"bench_distributed: {max(args.processes)} processes asked for, {torch.cuda.device_count()} GPUs here")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"

    train_args = shlex.split(args.train_args) + ["--device", args.device]
    render_args = shlex.split(args.render_args) + ["--device", args.device]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.processes:
            row = {"processes": k, "train_rays_per_sec": train_rays_per_sec(k, args.config, args.steps, args.print_every, Path(tmp), train_args)}
            if args.expdir:
                row["render_frames_per_sec"] = render_frames_per_sec(k, args.expdir, args.ckpt, Path(tmp), render_args)
            results.append(row)
            print(json.dumps(row), flush=True)
    base = results[0]
    for row in results:
        row["train_speedup"] = row["train_rays_per_sec"] / base["train_rays_per_sec"]
        if "render_frames_per_sec" in row:
            row["render_speedup"] = row["render_frames_per_sec"] / base["render_frames_per_sec"]

    print(f"\n{device}, torch {torch.__version__}, {os.path.basename(args.config)}, {args.steps} steps")
    print(f"{'processes':>9} {'train rays/s':>13} {'speedup':>8} {'render frames/s':>16} {'speedup':>8}")
    for row in results:
        render = f"{row['render_frames_per_sec']:>16.1f} {row['render_speedup']:>7.2f}x" if "render_frames_per_sec" in row else f"{'-':>16} {'-':>8}"
        print(f"{row['processes']:>9} {row['train_rays_per_sec']:>13.0f} {row['train_speedup']:>7.2f}x {render}")
    print(json.dumps({"device": device, "torch": torch.__version__, "config": args.config, "steps": args.steps, "results": results}))


if __name__ == "__main__":
    main()
