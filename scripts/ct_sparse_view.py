#!/usr/bin/env python3
"""Sparse-view CT with integral networks: interpolate a subsampled Shepp–Logan sinogram.

For every activation and subsampling level, trains a grad network on every
k-th angle, predicts the whole sinogram with Φ(t_max) − Φ(t_min), and scores
the held-out angles beside linear interpolation along θ. It also scores the
filtered back-projection of each sinogram against the phantom. Writes
``report.md`` and ``ct_sparse_view.png`` to --out; the JSON is the last line.
"""
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


from autoint_cli.cli import ArgumentParser
from autoint_cli.ct import SHEPP_LOGAN, filtered_back_projection, fit, interpolate_angles, make_views, predict_sinogram, psnr, rasterize


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = ArgumentParser(prog="ct_sparse_view.py", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="phantom pixels and detector bins")
    parser.add_argument("--n_angles", type=int, default=64, help="angles in [0, 180) degrees")
    parser.add_argument("--subsample", type=int, nargs="+", default=[4, 8, 16], help="train on every k-th angle")
    parser.add_argument("--activation", nargs="+", default=["swish", "sine", "relu", "softplus"], choices=["swish", "sine", "relu", "softplus"])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("logs/ct_sparse_view"))
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under a minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.n_angles, args.steps, args.subsample, args.activation = 32, 32, 60, [4], ["swish", "relu"]
    for name in ("size", "n_angles", "steps"):
        if getattr(args, name) < 2:
            parser.error(f"--{name} must be at least 2, got {getattr(args, name)}")
    if min(args.subsample) < 2 or max(args.subsample) >= args.n_angles:
        parser.error(f"--subsample values must lie in [2, n_angles), got {args.subsample}")

    phantom = rasterize(SHEPP_LOGAN, args.size)
    results, figures = [], {}
    start = time.perf_counter()
    for k in args.subsample:
        views = make_views(args.size, args.n_angles, k)
        held = views.test_columns
        baseline = interpolate_angles(views)
        row = {"subsample": k, "train_angles": len(views.train_columns),
               "baseline": {"sinogram_psnr": psnr(baseline[:, held], views.sinogram[:, held]),
                            "fbp_psnr": psnr(filtered_back_projection(baseline, views.theta), phantom)},
               "autoint": {}}
        figures[k] = {"truth": views.sinogram, "baseline": baseline}
        for activation in args.activation:
            began = time.perf_counter()
            result = fit(views, activation, steps=args.steps, seed=args.seed)
            predicted = predict_sinogram(result.network, views)
            row["autoint"][activation] = {
                "sinogram_psnr": psnr(predicted[:, held], views.sinogram[:, held]),
                "train_psnr": psnr(predicted[:, views.train_columns], views.sinogram[:, views.train_columns]),
                "fbp_psnr": psnr(filtered_back_projection(predicted, views.theta), phantom),
                "final_loss": result.losses[-1],
                "seconds": time.perf_counter() - began,
            }
            figures[k][activation] = predicted
        results.append(row)
    seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    table = report_table(results, args)
    (args.out / "report.md").write_text(table)
    plot(figures, phantom, args.out / "ct_sparse_view.png")
    print(table, end="")
    print(json.dumps({"size": args.size, "n_angles": args.n_angles, "steps": args.steps, "seconds": round(seconds, 1), "results": results}))
    return 0


def report_table(results, args) -> str:
    lines = [f"# Sparse-view CT: Shepp–Logan {args.size}x{args.size}, {args.n_angles} angles, {args.steps} steps", "",
             "PSNR (dB) of the held-out angles of the sinogram, and of the filtered back-projection against the phantom.", "",
             "| every k-th angle | method | sinogram PSNR | FBP PSNR |", "|---|---|---|---|"]
    for row in results:
        lines.append(f"| {row['subsample']} ({row['train_angles']} angles) | linear interpolation | {row['baseline']['sinogram_psnr']:.2f} | {row['baseline']['fbp_psnr']:.2f} |")
        for activation, r in row["autoint"].items():
            lines.append(f"| {row['subsample']} | AutoInt, {activation} | {r['sinogram_psnr']:.2f} | {r['fbp_psnr']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(figures, phantom, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(figures)
    methods = [m for m in figures[levels[0]] if m != "truth"]
    fig, axes = plt.subplots(len(levels), len(methods) + 2, figsize=(2.6 * (len(methods) + 2), 2.6 * len(levels)), squeeze=False)
    for i, k in enumerate(levels):
        truth = figures[k]["truth"]
        axes[i, 0].imshow(truth, cmap="gray", aspect="auto")
        axes[i, 0].set_title(f"true sinogram (k={k})", fontsize=8)
        centre = truth.shape[0] // 2
        axes[i, -1].plot(truth[centre], "k-", label="true")
        for j, method in enumerate(methods):
            axes[i, j + 1].imshow(figures[k][method], cmap="gray", aspect="auto", vmin=truth.min(), vmax=truth.max())
            axes[i, j + 1].set_title(method, fontsize=8)
            axes[i, -1].plot(figures[k][method][centre], lw=0.8, label=method)
        axes[i, -1].set_title("centre scanline over angles", fontsize=8)
        axes[i, -1].legend(fontsize=6)
    for ax in axes[:, :-1].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
