#!/usr/bin/env python3
"""Grad-network training step, forward-mode tangents against double backprop.

Times forward + backward of a loss on ∂Φ/∂t for a batch of samples through a
paper-size integral network (x = o + t·d, 1/f-normalised encoding of x, an
MLP of ``--n_layers`` Swish layers of ``--width``), computing ∂Φ/∂t

* ``double_backprop``: ``torch.autograd.grad(Φ, t, create_graph=True)``, the
  way the authors' 1-D and CT scripts train;
* ``forward_mode``: this project's grad network (primal and tangent together);
* ``forward_mode_compiled``: the same module under ``torch.compile``;
* ``forward_mode_autotuned``: under ``torch.compile(mode="max-autotune-no-cudagraphs")``.

All variants share one set of weights; their ∂Φ/∂t and parameter gradients are
compared with a float64 double-backprop reference before timing. Prints a table, then one JSON
line. ``--quick`` runs a small smoke check on any device.
"""
import argparse
import copy
import json
import statistics
import sys
import time
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor

from autoint_cli.autoint import Constant, IntegralNetwork, PositionalEncoding, Product, Sequential, Sum, Variable, mlp
from autoint_cli.utils.fastpath import matmul_precision


def build_network(n_freqs: int, width: int, n_layers: int, out_features: int) -> IntegralNetwork:
    point = Sum(Constant(0), Product(Variable(), Constant(1)))  # o + t·d
    encode = PositionalEncoding(n_freqs)
    body = Sequential(point, encode, mlp(encode.out_features(3), width, n_layers, out_features, "swish"))
    return IntegralNetwork(body, n_constants=2)


def make_steps(phi: IntegralNetwork, t: Tensor, o: Tensor, d: Tensor, target: Tensor) -> Dict[str, Callable[[], Tensor]]:
    grad_net = phi.grad_network()

    def double_backprop() -> Tensor:
        tt = t.detach().requires_grad_(True)
        y = phi(tt, o, d)
        dy = torch.stack(
            [torch.autograd.grad(y[..., k].sum(), tt, create_graph=True)[0][..., 0] for k in range(y.shape[-1])], dim=-1
        )
        torch.mean((dy - target) ** 2).backward()
        return dy

    def forward_mode(net: Callable[..., Tensor] = grad_net) -> Tensor:
        dy = net(t, o, d)
        torch.mean((dy - target) ** 2).backward()
        return dy

    compiled = torch.compile(grad_net)
    autotuned = torch.compile(grad_net, mode="max-autotune-no-cudagraphs")
    return {
        "double_backprop": double_backprop,
        "forward_mode": forward_mode,
        "forward_mode_compiled": lambda: forward_mode(compiled),
        "forward_mode_autotuned": lambda: forward_mode(autotuned),
    }


def float64_reference(phi: IntegralNetwork, t: Tensor, o: Tensor, d: Tensor, target: Tensor):
    """∂Φ/∂t and the parameter gradients in float64, by double backprop on a float64 copy."""
    phi64 = copy.deepcopy(phi).double()
    step = make_steps(phi64, t.double(), o.double(), d.double(), target.double())["double_backprop"]
    dy = step().detach()
    params = list(phi64.parameters())
    grads = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in params])
    del phi64
    return dy, grads


def relative_error(x: Tensor, ref: Tensor) -> float:
    return (torch.linalg.vector_norm((x - ref).double()) / torch.linalg.vector_norm(ref.double())).item()


def time_step(step: Callable[[], Tensor], params, device: torch.device, warmup: int, repeats: int) -> Dict[str, float]:
    def run() -> None:
        for p in params:
            p.grad = None
        step()

    for _ in range(warmup):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        else:
            begin = time.perf_counter()
            run()
            times.append((time.perf_counter() - begin) * 1e3)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"median_ms": statistics.median(times), "min_ms": min(times), "peak_gib": peak}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log2_samples", type=int, default=18)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--n_layers", type=int, default=10)
    parser.add_argument("--n_freqs", type=int, default=10)
    parser.add_argument("--out_features", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matrix products (default: full float32)")
    parser.add_argument("--variants", nargs="+", default=["double_backprop", "forward_mode", "forward_mode_compiled"])
    parser.add_argument("--quick", action="store_true", help="small smoke run (2^12 samples, 3 repeats)")
    args = parser.parse_args(argv)
    if args.quick:
        args.log2_samples, args.repeats, args.warmup = 12, 3, 1

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with matmul_precision("tf32" if args.tf32 else "fp32"):
        return measure(args, device)


def measure(args, device: torch.device) -> int:
    """Times each variant's step and prints the table and the JSON line."""
    torch.manual_seed(0)
    n = 2**args.log2_samples
    phi = build_network(args.n_freqs, args.width, args.n_layers, args.out_features).to(device)
    params = list(phi.parameters())
    t = torch.rand(n, 1, device=device) * 4 + 2
    o = torch.randn(n, 3, device=device)
    d = torch.nn.functional.normalize(torch.randn(n, 3, device=device), dim=-1)
    target = torch.randn(n, args.out_features, device=device)
    steps = make_steps(phi, t, o, d, target)

    outputs, grads = {}, {}
    for name in args.variants:
        for p in params:
            p.grad = None
        outputs[name] = steps[name]().detach()
        # The output bias has no gradient: ∂Φ/∂t does not depend on it.
        grads[name] = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in params])
    reference = "double_backprop" if "double_backprop" in args.variants else args.variants[0]
    exact_output, exact_grads = float64_reference(phi, t, o, d, target)

    results = {}
    for name in args.variants:
        timing = time_step(steps[name], params, device, args.warmup, args.repeats)
        timing["output_rel_err"] = relative_error(outputs[name], outputs[reference])
        timing["param_grad_rel_err"] = relative_error(grads[name], grads[reference])
        timing["output_err_vs_float64"] = relative_error(outputs[name], exact_output)
        timing["param_grad_err_vs_float64"] = relative_error(grads[name], exact_grads)
        results[name] = timing
    base = results[reference]["median_ms"]
    for name, r in results.items():
        r["speedup_vs_" + reference] = base / r["median_ms"]

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{n} samples, {args.n_layers}x{args.width} swish, PE {args.n_freqs}, out {args.out_features}, "
          f"tf32={args.tf32}, {device_name}, torch {torch.__version__}")
    print("errors are ||x - ref|| / ||ref|| against a float64 double-backprop reference")
    print(f"{'variant':<24}{'median ms':>10}{'min ms':>9}{'peak GiB':>10}{'speedup':>9}{'out err':>10}{'grad err':>10}")
    for name, r in results.items():
        print(f"{name:<24}{r['median_ms']:>10.2f}{r['min_ms']:>9.2f}{r['peak_gib']:>10.2f}"
              f"{r['speedup_vs_' + reference]:>8.2f}x{r['output_err_vs_float64']:>10.1e}{r['param_grad_err_vs_float64']:>10.1e}")
    print(json.dumps({
        "bench": "autoint_grad_step",
        "device": device_name,
        "torch": torch.__version__,
        "samples": n,
        "n_layers": args.n_layers,
        "width": args.width,
        "n_freqs": args.n_freqs,
        "out_features": args.out_features,
        "tf32": args.tf32,
        "results": results,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
