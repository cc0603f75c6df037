#!/usr/bin/env python3
"""The AutoInt 1-D demo: fit a grad network to f, integrate it with the integral network.

Prints a JSON summary on its last line and writes DIR/fit_1d_<fn>.png.
Importable: ``main(argv) -> int``.
"""
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from autoint_cli.autoint import ACTIVATIONS
from autoint_cli.cli import ArgumentParser
from autoint_cli.experiments.fit1d import FUNCTIONS, Fit1DConfig, fit, plot_fit


def build_parser() -> ArgumentParser:
    defaults = Fit1DConfig()
    parser = ArgumentParser(prog="fit_1d.py", description=__doc__.splitlines()[0])
    parser.add_argument("--fn", choices=sorted(FUNCTIONS), default=defaults.fn, help="function to integrate")
    parser.add_argument("--range", nargs=2, type=float, metavar=("A", "B"), default=list(defaults.range), help="interval [A, B]")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default=defaults.activation)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="Adam steps")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--hidden_features", type=int, default=defaults.hidden_features)
    parser.add_argument("--n_layers", type=int, default=defaults.n_layers, help="linear layers of the integral network")
    parser.add_argument("--n_freqs", type=int, default=defaults.n_freqs, help="encoding frequencies (not used by sine)")
    parser.add_argument("--w0", type=float, default=defaults.w0, help="sine frequency factor")
    parser.add_argument("--lrate", type=float, default=defaults.lrate)
    parser.add_argument("--n_points", type=int, default=defaults.n_points, help="stratified training points per step")
    parser.add_argument("--out", type=Path, default=Path("logs/fit_1d"), help="folder for the plot")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("steps", "hidden_features", "n_layers", "n_points"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.lrate <= 0:
        parser.error(f"--lrate must be positive, got {args.lrate}")
    if not args.range[1] > args.range[0]:
        parser.error(f"--range needs A < B, got {args.range[0]:g} {args.range[1]:g}")
    fields = {k: v for k, v in vars(args).items() if k != "out"}
    fields["range"] = tuple(fields["range"])
    result = fit(Fit1DConfig(**fields))
    try:
        plot = plot_fit(result, args.out / f"fit_1d_{args.fn}.png")
    except OSError as err:
        print(f"fit_1d: cannot write the plot under {args.out}: {err.strerror}", file=sys.stderr)
        return 1
    summary = result.summary()
    summary["plot"] = str(plot)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
