#!/usr/bin/env python3
"""The fused MLP kernel alone: ms, matrix TFLOP/s and error of Φ's 10×256 Swish MLP, per launch setting.

Times M rows (default 2.72 M: a 400×400 frame at N = 16, 17 posts a ray) of
the paper-size network with random weights, through

* ``torch_bf16``: the layers under bf16 autocast (output layer in float32),
* ``compiled_bf16``: the same under torch.compile,
* ``fused BM/warps/split/fast``: the fused kernel with each launch setting,

and compares each on the first 65,536 rows with a float64 evaluation of the
same weights. Prints a table, then one JSON line. Needs CUDA (and Triton for
the fused rows).
"""
import argparse
import json
import sys
from typing import Optional, Sequence

import torch
from bench_render import measured_bf16_rate

from autoint_cli.autoint import Dual, mlp
from autoint_cli.autoint.fused import KernelConfig, available, plan_mlp
from autoint_cli.utils.fastpath import compile_module

from bench_common import bench_device, device_label, time_calls


def parse_config(text: str) -> KernelConfig:
    """BM/warps/split/fast, e.g. 128/8/1/1."""
    try:
        bm, warps, split, fast = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BM/warps/split/fast (four integers), got {text!r}") from None
    return KernelConfig(bm, warps, split, bool(fast))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400 * 400 * 17)
    parser.add_argument("--in_features", type=int, default=90, help="Φ's encoded input: γ(o + t d) and γ(q)")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=10, help="Linear layers")
    parser.add_argument("--out_features", type=int, default=4)
    parser.add_argument("--configs", type=parse_config, nargs="+",
                        default=[parse_config(c) for c in ("64/4/1/1", "128/8/1/1", "128/8/1/0", "64/4/2/1", "128/8/2/1")])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    device = bench_device()
    if device.type != "cuda":
        print("bench_fused needs a CUDA device", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    net = mlp(args.in_features, args.width, args.depth, args.out_features, "swish", full_precision_output=True).to(device)
    plan, why = plan_mlp(list(net.layers))
    if plan is None:
        print(f"bench_fused: the kernel cannot run this network: {why}", file=sys.stderr)
        return 2
    x = torch.randn(args.rows, args.in_features, device=device)
    check = x[:65536]
    with torch.no_grad():
        reference = net.double()(Dual(check.double())).primal
        net.float()
    flops = 2 * args.rows * sum(m.weight.numel() for m in plan.linears)
    name = device_label(device)
    print(f"{name}, torch {torch.__version__}, {args.rows} rows, {args.in_features}->{args.depth}x{args.width}->{args.out_features}", flush=True)
    print(f"{'variant':<24}{'ms':>9}{'TFLOP/s':>9}{'max |err|':>11}", flush=True)

    def plain(v):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return net(Dual(v)).primal

    variants = [("torch_bf16", plain), ("compiled_bf16", compile_module(plain))]
    if available(device):
        variants += [(f"fused {c.block_rows}/{c.num_warps}/{c.split}/{int(c.fast_activation)}", lambda v, c=c: plan(v, c)) for c in args.configs]
    rows = []
    for label, fn in variants:
        try:
            with torch.no_grad():
                ms, _ = time_calls(lambda: fn(x), device, args.repeats, warmup=2)
                err = (fn(check).double() - reference).abs().max().item()
        except Exception as exc:  # a launch setting that does not fit this GPU is reported, not fatal
            print(f"{label:<24}failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}", flush=True)
            continue
        rows.append({"variant": label, "ms": ms, "matrix_tflops": flops / (ms / 1e3) / 1e12, "max_abs_err": err})
        print(f"{label:<24}{ms:>9.2f}{rows[-1]['matrix_tflops']:>9.1f}{err:>11.2e}", flush=True)
    bf16 = measured_bf16_rate(device)
    print(f"measured bf16 matmul: {bf16 and round(bf16)} TFLOP/s; reference max |y| {reference.abs().max().item():.3g}", flush=True)
    print(json.dumps({"bench": "fused", "device": name, "torch": torch.__version__, "rows": args.rows, "bf16_matmul_tflops": bf16, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
