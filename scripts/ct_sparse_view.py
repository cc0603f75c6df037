#!/usr/bin/env python3
"""Sparse-view CT with integral networks: interpolate a subsampled Shepp–Logan sinogram.

For every activation and subsampling level, trains a grad network on every
k-th angle, predicts the whole sinogram with Φ(t_max) − Φ(t_min), and scores
the held-out angles beside classical interpolation along θ (linear, periodic
cubic spline and band-limited, all using p(ρ, θ + π) = p(−ρ, θ)). It also
scores the filtered back-projection of each sinogram against the phantom.
``--paper`` runs the authors' protocol (4 x 128 network, 10 frequencies, 64
samples per line, Adam with amsgrad at 1e-4, 50,000 steps); ``--jobs`` fits
several networks at once (spread over the visible GPUs). Writes
``results.json``, ``report.md``, ``ct_sparse_view.png`` and
``ct_convergence.png`` to --out; the JSON is also the last line printed.
Each finished fit is kept in --out/fits/ as it ends, so a run that is stopped
(or runs out of time) keeps what it finished, and running it again with the same
settings fits only what is missing.
"""
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from autoint_cli.cli import ArgumentParser
from autoint_cli.experiments.ct import (
    INTERPOLATORS,
    PAPER,
    SHEPP_LOGAN,
    FitSettings,
    filtered_back_projection,
    fit,
    interpolate_angles,
    make_views,
    predict_sinogram,
    psnr,
    rasterize,
)
from autoint_cli.utils.atomic import atomic_write, write_text

ACTIVATIONS = ("swish", "sine", "relu", "softplus")
PAPER_NOTE = " (the authors' protocol)"


def parse(argv: Optional[Sequence[str]]):
    parser = ArgumentParser(prog="ct_sparse_view.py", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="phantom pixels and detector bins")
    parser.add_argument("--n_angles", type=int, default=64, help="angles in [0, 180) degrees")
    parser.add_argument("--subsample", type=int, nargs="+", default=[4, 8, 16], help="train on every k-th angle")
    parser.add_argument("--activation", nargs="+", default=list(ACTIVATIONS), choices=ACTIVATIONS)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: 800, or 50,000 with --paper)")
    parser.add_argument("--paper", action="store_true", help="the authors' protocol: 4x128, 10 frequencies, 64 samples, amsgrad 1e-4")
    parser.add_argument("--lrate", type=float, default=None, help="Adam's learning rate instead of the protocol's")
    parser.add_argument("--hidden", type=int, default=None, help="network width instead of the protocol's")
    parser.add_argument("--n_freqs", type=int, default=None, help="encoding frequencies instead of the protocol's")
    parser.add_argument("--cosine", choices=("on", "off"), default=None, help="cosine decay of the rate (on) or a constant rate (off) instead of the protocol's")
    parser.add_argument("--compile", action="store_true", help="compile each step's loss and backward (reduce-overhead: CUDA graphs)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--jobs", type=int, default=1, help="networks fitted at once, in separate processes (spread over the GPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("logs/ct_sparse_view"))
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under a minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.n_angles, args.steps, args.subsample, args.activation = 32, 32, 60, [4], ["swish", "relu"]
    if args.steps is None:
        args.steps = PAPER.steps if args.paper else 800
    for name in ("size", "n_angles", "steps", "jobs"):
        if getattr(args, name) < (1 if name == "jobs" else 2):
            parser.error(f"--{name} must be at least {1 if name == 'jobs' else 2}, got {getattr(args, name)}")
    for name in ("lrate", "hidden", "n_freqs"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if min(args.subsample) < 2 or max(args.subsample) >= args.n_angles:
        parser.error(f"--subsample values must lie in [2, n_angles), got {args.subsample}")
    if args.device not in ("auto", "cpu", "cuda"):
        parser.error(f"--device must be auto, cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but CUDA is not available here")
    return args


def settings_of(args) -> FitSettings:
    # History entries: every 40th of the run (at least every 10th, and every 500 steps under --paper).
    log_every = max(1, min(PAPER.log_every, args.steps // 10) if args.paper else args.steps // 40)
    base = PAPER if args.paper else FitSettings()
    overrides = {name: getattr(args, name) for name in ("lrate", "hidden", "n_freqs") if getattr(args, name) is not None}
    if args.cosine is not None:
        overrides["cosine"] = args.cosine == "on"
    return dataclasses.replace(base, steps=args.steps, seed=args.seed, log_every=log_every,
                               compile_mode="reduce-overhead" if args.compile else None, **overrides)


def fit_key(task: Dict) -> Dict:
    """What decides a fit's result: a kept fit is reused only when all of it matches."""
    return {"size": task["size"], "n_angles": task["n_angles"], "subsample": task["subsample"], "activation": task["activation"],
            "settings": dataclasses.asdict(task["settings"])}


def kept_fit(task: Dict) -> Optional[Dict]:
    """The fit of ``task`` from an earlier run with the same settings, or None."""
    path = task["keep"]
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("key") != json.loads(json.dumps(fit_key(task))):
        return None
    return {**saved["fit"], "predicted": np.asarray(saved["fit"]["predicted"]), "reused": True}


def fit_task(task: Dict) -> Dict:
    """One network (a subsampling level and an activation) on its device: its predicted sinogram, history and time; kept on disk."""
    device = torch.device(task["device"])
    if device.type == "cpu" and task["jobs"] > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // task["jobs"]))  # the jobs share the cores instead of fighting over them
    views = make_views(task["size"], task["n_angles"], task["subsample"])
    began = time.perf_counter()
    result = fit(views, task["activation"], task["settings"], device)
    predicted = predict_sinogram(result.network, views)
    done = {**{k: task[k] for k in ("subsample", "activation")}, "predicted": predicted, "history": result.history,
            "final_loss": result.losses[-1], "seconds": time.perf_counter() - began, "device": task["device"]}
    task["keep"].parent.mkdir(parents=True, exist_ok=True)
    write_text(task["keep"], json.dumps({"key": fit_key(task), "fit": {**done, "predicted": np.asarray(predicted).tolist()}}))
    return done


def run_fits(args, settings: FitSettings) -> List[Dict]:
    """Every (subsampling, activation) fit not kept from an earlier run, ``--jobs`` at a time, round-robin over the GPUs on CUDA."""
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if cuda else ["cpu"]
    tasks = [{"size": args.size, "n_angles": args.n_angles, "subsample": k, "activation": a, "settings": settings, "jobs": args.jobs,
              "keep": args.out / "fits" / f"{a}_k{k}.json"} for k in args.subsample for a in args.activation]
    kept = {i: kept_fit(task) for i, task in enumerate(tasks)}
    todo = [task for i, task in enumerate(tasks) if kept[i] is None]
    if len(todo) < len(tasks):
        print(f"reusing {len(tasks) - len(todo)} fit(s) kept in {args.out / 'fits'}", flush=True)
    for i, task in enumerate(todo):
        task["device"] = devices[i % len(devices)]
    if args.jobs == 1 or len(todo) <= 1:
        fitted = [fit_task(task) for task in todo]
    else:
        # spawn: CUDA cannot be used in a forked child.
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            fitted = list(pool.map(fit_task, todo))
    fitted.reverse()
    return [kept[i] if kept[i] is not None else fitted.pop() for i in range(len(tasks))]


def score(args, fits: List[Dict]):
    """Per subsampling: the classical interpolators and every network, scored on the held-out angles and by FBP."""
    phantom = rasterize(SHEPP_LOGAN, args.size)
    results, figures = [], {}
    for k in args.subsample:
        views = make_views(args.size, args.n_angles, k)
        held, train = views.test_columns, views.train_columns

        def scores(sinogram):
            return {"sinogram_psnr": psnr(sinogram[:, held], views.sinogram[:, held]),
                    "fbp_psnr": psnr(filtered_back_projection(sinogram, views.theta), phantom)}

        row = {"subsample": k, "train_angles": len(train), "classical": {}, "autoint": {}}
        figures[k] = {"ground truth": views.sinogram}
        for method in INTERPOLATORS:
            row["classical"][method] = scores(interpolate_angles(views, method))
        figures[k]["linear"] = interpolate_angles(views, "linear")
        for f in (f for f in fits if f["subsample"] == k):
            predicted = f["predicted"]
            row["autoint"][f["activation"]] = {
                "train_psnr": psnr(predicted[:, train], views.sinogram[:, train]), **scores(predicted),
                "final_loss": f["final_loss"], "seconds": f["seconds"], "device": f["device"], "history": f["history"]}
            figures[k][f["activation"]] = predicted
        results.append(row)
    return results, figures


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    settings = settings_of(args)
    start = time.perf_counter()
    fits = run_fits(args, settings)
    results, figures = score(args, fits)
    protocol = {k: v for k, v in dataclasses.asdict(settings).items() if k != "seed"}
    summary = {"size": args.size, "n_angles": args.n_angles, "steps": args.steps, "paper": args.paper, "protocol": protocol,
               "seed": args.seed, "seconds": round(time.perf_counter() - start, 1), "reused": sum(bool(f.get("reused")) for f in fits), "torch": torch.__version__,
               "device": torch.cuda.get_device_name(0) if fits and fits[0]["device"].startswith("cuda") else "cpu", "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    table = report(summary)
    write_text(args.out / "results.json", json.dumps(summary, indent=1) + "\n")
    write_text(args.out / "report.md", table)
    atomic_write(args.out / "ct_sparse_view.png", lambda temp: plot_sinograms(figures, temp))
    atomic_write(args.out / "ct_convergence.png", lambda temp: plot_convergence(results, temp))
    print(table, end="")
    print(json.dumps({**summary, "results": [strip_history(r) for r in results]}))
    return 0


def strip_history(row: Dict) -> Dict:
    return {**row, "autoint": {a: {k: v for k, v in r.items() if k != "history"} for a, r in row["autoint"].items()}}


def protocol_note(summary: Dict) -> str:
    """" (the authors' protocol)" under --paper, and what was changed from it or from the CPU default ("" when nothing was)."""
    base, label = (PAPER, "the authors' protocol") if summary["paper"] else (FitSettings(), "the default settings")
    base = dataclasses.asdict(base)
    changed = [f"{k} {v}" for k, v in summary["protocol"].items() if k not in ("steps", "log_every", "compile_mode") and base.get(k) != v]
    if not changed:
        return PAPER_NOTE if summary["paper"] else ""
    return f" ({label} with {', '.join(changed)})"


def report(summary: Dict) -> str:
    """The table of every method at every subsampling, then what the numbers say (computed here, not written by hand)."""
    lines = [f"# Sparse-view CT: Shepp–Logan {summary['size']}x{summary['size']}, {summary['n_angles']} angles, "
             f"{summary['steps']} steps{protocol_note(summary)}", "",
             f"Device: {summary['device']}, torch {summary['torch']}; {summary['seconds']} s in all"
             f"{'' if not summary.get('reused') else ', reusing ' + str(summary['reused']) + ' fit(s) kept by an earlier run'}. PSNR (dB) of the held-out "
             "angles of the sinogram, of the training angles (networks), and of the filtered back-projection against the phantom.", "",
             "| every k-th angle | method | held-out sinogram PSNR | training-angle PSNR | FBP PSNR | fit time (s) |", "|---|---|---|---|---|---|"]
    for row in summary["results"]:
        for method, r in row["classical"].items():
            lines.append(f"| {row['subsample']} ({row['train_angles']} angles) | {method} interpolation | {r['sinogram_psnr']:.2f} | | "
                         f"{r['fbp_psnr']:.2f} | |")
        for activation, r in row["autoint"].items():
            lines.append(f"| {row['subsample']} | AutoInt, {activation} | {r['sinogram_psnr']:.2f} | {r['train_psnr']:.2f} | "
                         f"{r['fbp_psnr']:.2f} | {r['seconds']:.0f} |")
    lines += ["", "## What the numbers say", ""] + verdicts(summary["results"])
    return "\n".join(lines) + "\n"


def verdicts(results: List[Dict]) -> List[str]:
    out = []
    for row in results:
        nets, classical = row["autoint"], row["classical"]
        if not nets:
            continue
        best_net = max(nets, key=lambda a: nets[a]["sinogram_psnr"])
        best_classical = max(classical, key=lambda m: classical[m]["sinogram_psnr"])
        gap = nets[best_net]["sinogram_psnr"] - classical[best_classical]["sinogram_psnr"]
        underfit = [a for a, r in nets.items() if r["train_psnr"] < 35.0]
        out.append(f"- every {row['subsample']}th angle: the best network is {best_net} ({nets[best_net]['sinogram_psnr']:.2f} dB); "
                   f"swish is {'the best' if best_net == 'swish' else 'not the best' if 'swish' in nets else 'not run'}; "
                   f"the best classical interpolator is {best_classical} ({classical[best_classical]['sinogram_psnr']:.2f} dB), "
                   f"{'below' if gap > 0 else 'above'} the best network by {abs(gap):.2f} dB. "
                   + (f"Below 35 dB on their own training angles: {', '.join(underfit)}." if underfit else "Every network fits its training angles to 35 dB or more."))
    return out


def plot_sinograms(figures, path: Path) -> None:
    """The paper's layout: one row per subsampling; ground truth, linear interpolation, each network; the centre scanline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(figures)
    methods = list(figures[levels[0]])
    fig, axes = plt.subplots(len(levels), len(methods) + 1, figsize=(2.4 * (len(methods) + 1), 2.4 * len(levels)), squeeze=False)
    for i, k in enumerate(levels):
        truth = figures[k]["ground truth"]
        centre = truth.shape[0] // 2
        for j, method in enumerate(methods):
            axes[i, j].imshow(figures[k][method], cmap="gray", aspect="auto", vmin=truth.min(), vmax=truth.max())
            axes[i, j].set_title(f"{method}, every {k}th" if method != "ground truth" else "ground truth", fontsize=7)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            axes[i, -1].plot(figures[k][method][centre], "k-" if method == "ground truth" else "-", lw=1.2 if method == "ground truth" else 0.8,
                             label=method)
        axes[i, -1].set_title("centre scanline over angles", fontsize=7)
        axes[i, -1].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def plot_convergence(results: List[Dict], path: Path) -> None:
    """Training-angle PSNR and loss against steps, one line per network, one column per subsampling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(3.4 * len(results), 5.2), squeeze=False)
    for j, row in enumerate(results):
        for activation, r in row["autoint"].items():
            steps = [h["step"] for h in r["history"]]
            axes[0, j].plot(steps, [h["train_psnr"] for h in r["history"]], label=activation)
            axes[1, j].semilogy(steps, [h["loss"] for h in r["history"]], label=activation)
        axes[0, j].set_title(f"every {row['subsample']}th angle: training-angle PSNR (dB)", fontsize=7)
        axes[1, j].set_title("loss", fontsize=7)
        axes[1, j].set_xlabel("step", fontsize=7)
        axes[0, j].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
