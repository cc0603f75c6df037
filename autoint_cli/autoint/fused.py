"""The forward pass of a whole MLP as one Triton kernel: activations never leave the chip.

For a chain Linear, f, Linear, f, …, Linear (one activation f, equal hidden
widths H), each program takes a tile of BM rows and runs every layer on it:

    h_0 = f(x W_0ᵀ + b_0),   h_l = f(h_{l-1} W_lᵀ + b_l),   y = h_L W_outᵀ + b_out

* hidden products: bf16 operands, float32 accumulation (tensor cores);
  each h_l is computed in float32 and rounded to bf16 as the next input;
* the output layer: float32 products and sums of the float32 h_L, so Φ keeps
  the float32 digits that differences over short sections need.

Between layers the activations stay in registers and shared memory; a layer's
weights come from L2 (the whole 10×256 network is 1.2 MB). Separate GEMM
kernels would read and write every activation through HBM once per layer,
and at width 256 that traffic, not the matrix work, bounds them.

Inference only (no backward). Needs Triton: CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1`` (the tests' reference runs).
"""
import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .layers import ACTIVATIONS, AutoIntModule, Elementwise, Linear, activation_kind

try:
    import triton
    import triton.language as tl
except ImportError:  # the fused path is optional: everything else runs without Triton
    triton = None

MAX_WIDTH = 256  # a BM×H float32 accumulator must fit in registers
MAX_OUT = 8  # outputs are per-row dot products, one reduction each


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(device: torch.device) -> bool:
    """Whether the fused kernel can run on ``device`` here (NVIDIA GPUs: the kernel has PTX inline assembly)."""
    nvidia = device.type == "cuda" and torch.version.hip is None
    return triton is not None and (nvidia or (device.type == "cpu" and interpreting()))


@dataclass(frozen=True)
class KernelConfig:
    """Launch settings: BM rows per program, warps per program, the hidden product split into ``split``² blocks,
    and ``fast_activation`` (hardware tanh for the hidden activations that are rounded to bf16 anyway)."""

    block_rows: int = 128
    num_warps: int = 8
    split: int = 2
    fast_activation: bool = True


# The fastest of scripts/bench_fused.py's sweep on an H100 (docs/BENCHMARKS.md); split=1 fits hidden widths of 16.
DEFAULT_CONFIG = KernelConfig()


@dataclass(frozen=True)
class FusedMLP:
    """A Linear/activation chain that the kernel can run, holding the layers themselves (not copies).

    Attributes:
        linears: the Linear layers, first to last (at least two).
        activation: name of the activation between them.
        w0: sine's frequency (unused by other activations).
    """

    linears: Tuple[Linear, ...]
    activation: str
    w0: float = 30.0

    @property
    def width(self) -> int:
        return self.linears[0].out_features

    @property
    def in_features(self) -> int:
        return self.linears[0].in_features

    @property
    def out_features(self) -> int:
        return self.linears[-1].out_features

    def packed(self, device: torch.device) -> Tuple[Tensor, ...]:
        """The kernel's operands, cast and laid out for it (a few small tensors, rebuilt per call so they follow training).

        Returns:
            w_in [K_pad, H] bf16 (zero rows past in_features), b_in [H] fp32,
            w_hid [L, H, H] bf16 (each Wᵀ), b_hid [L, H] fp32,
            w_out [n_out, H] fp32, b_out [n_out] fp32.
        """
        first, hidden, last = self.linears[0], self.linears[1:-1], self.linears[-1]
        h = self.width
        k_pad = padded_width(self.in_features)
        w_in = torch.zeros(k_pad, h, device=device, dtype=torch.bfloat16)
        w_in[: self.in_features] = first.weight.detach().t().to(torch.bfloat16)
        if hidden:
            w_hid = torch.stack([m.weight.detach().t() for m in hidden]).to(torch.bfloat16).contiguous()
            b_hid = torch.stack([_bias(m) for m in hidden]).float()
        else:  # a pointer the kernel never reads
            w_hid = torch.zeros(1, device=device, dtype=torch.bfloat16)
            b_hid = torch.zeros(1, device=device)
        return w_in, _bias(first).float(), w_hid, b_hid, last.weight.detach().float().contiguous(), _bias(last).float()

    def __call__(self, x: Tensor, config: KernelConfig = DEFAULT_CONFIG) -> Tensor:
        """y = MLP(x) for x [*batch, in_features] (any float dtype): [*batch, out_features] float32."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"fused MLP of {self.in_features} inputs got {x.shape[-1]} features")
        batch = x.shape[:-1]
        # The kernel rounds its input to bf16 first: rounded here, a compiled caller writes and the kernel reads half the bytes.
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)  # the op itself makes the features unit-stride
        if config.split > 1 and self.width // config.split < 16:
            config = dataclasses.replace(config, split=1)
        y = run_kernel(flat, self.packed(x.device), self, config)
        return y.reshape(*batch, self.out_features)


def _bias(linear: Linear) -> Tensor:
    if linear.bias is None:
        return torch.zeros(linear.out_features, device=linear.weight.device)
    return linear.bias.detach()


def padded_width(n: int) -> int:
    """The power of two ≥ max(n, 16) that a tile dimension of n features takes."""
    return max(16, 1 << math.ceil(math.log2(n)))


def plan_mlp(layers: Sequence[AutoIntModule]) -> Tuple[Optional[FusedMLP], str]:
    """(FusedMLP, "") when ``layers`` is a chain the kernel runs, else (None, why not)."""
    linears, acts = list(layers[0::2]), list(layers[1::2])
    if len(layers) < 3 or len(layers) % 2 == 0 or not all(isinstance(m, Linear) for m in linears):
        return None, "not a chain Linear, activation, …, Linear"
    if not all(isinstance(m, Elementwise) for m in acts) or len({type(m) for m in acts}) != 1:
        return None, "the activations are not all of one kind"
    kind = activation_kind(acts[0])
    if kind is None:
        return None, f"activation {type(acts[0]).__name__} is not in the activation table"
    refusals = {kind.kernel_refusal(m) for m in acts} - {""}
    if refusals:
        return None, sorted(refusals)[0]
    settings = {tuple(getattr(m, name) for name in kind.kernel_params) for m in acts}
    if len(settings) > 1:
        return None, f"the {kind.name} layers differ in {', '.join(kind.kernel_params)}"
    width = linears[0].out_features
    if any(m.out_features != width for m in linears[:-1]) or any(m.in_features != width for m in linears[1:]):
        return None, "the hidden layers differ in width"
    if width < 16 or width > MAX_WIDTH or width & (width - 1):
        return None, f"hidden width {width} is not a power of two in [16, {MAX_WIDTH}]"
    if linears[0].in_features > MAX_WIDTH:
        return None, f"{linears[0].in_features} input features (at most {MAX_WIDTH})"
    if linears[-1].out_features > MAX_OUT:
        return None, f"{linears[-1].out_features} outputs (at most {MAX_OUT})"
    w0 = getattr(acts[0], "w0", 30.0) if "w0" in kind.kernel_params else 30.0
    return FusedMLP(tuple(linears), kind.name, w0), ""


@torch.compiler.disable
def run_kernel(x: Tensor, packed: Tuple[Tensor, ...], mlp: FusedMLP, config: KernelConfig) -> Tensor:
    """Launches the kernel on x [M, in_features] (unit stride along features): [M, n_out] float32.

    Through the custom op ``autoint::fused_mlp``. torch.compile breaks its
    graph here rather than tracing the op: inside one graph with the encoding
    that feeds it, the op got wrong values at full frames (torch 2.11, H100;
    right at 4,096 rays, and right when compiled on its own).
    """
    if triton is None:
        raise RuntimeError("the fused MLP kernel needs Triton (pip install triton)")
    if config.split not in (1, 2) or mlp.width // config.split < 16:
        raise ValueError(f"split {config.split} does not fit width {mlp.width}")
    return torch.ops.autoint.fused_mlp(
        x, *packed, mlp.in_features, len(mlp.linears) - 2, ACTIVATIONS[mlp.activation].kernel_code, float(mlp.w0),
        config.block_rows, config.num_warps, config.split, config.fast_activation,
    )


if triton is not None:

    @torch.library.custom_op("autoint::fused_mlp", mutates_args=())
    def _fused_mlp_op(
        x: Tensor, w_in: Tensor, b_in: Tensor, w_hid: Tensor, b_hid: Tensor, w_out: Tensor, b_out: Tensor,
        in_features: int, n_hidden: int, activation: int, w0: float, block_rows: int, num_warps: int, split: int, fast: bool,
    ) -> Tensor:
        m = x.shape[0]
        y = torch.empty(m, w_out.shape[0], device=x.device, dtype=torch.float32)
        if m == 0:
            return y
        # The kernel indexes the weights as dense row-major blocks and x along unit-stride rows; under torch.compile
        # the tensors that arrive may be laid out otherwise (a stack of transposes, say).
        w_in, b_in, w_hid, b_hid, w_out, b_out = (w.contiguous() for w in (w_in, b_in, w_hid, b_hid, w_out, b_out))
        if x.stride(1) != 1:
            x = x.contiguous()
        interp = interpreting()
        kernel = _mlp_kernel if split == 1 else _mlp_kernel_split2
        kernel[(triton.cdiv(m, block_rows),)](
            x, w_in, b_in, w_hid, b_hid, w_out, b_out, y, m, in_features, x.stride(0), y.stride(0),
            K_PAD=w_in.shape[0], H=w_in.shape[1], N_HID=n_hidden, N_OUT=w_out.shape[0], ACT=activation, W0=w0, BM=block_rows,
            # The interpreter has neither inline assembly nor a correct bf16 product: float32 products of the bf16 values instead.
            FAST=fast and not interp, DOT_FP32=interp, num_warps=num_warps,
        )
        return y

    @_fused_mlp_op.register_fake
    def _fused_mlp_shape(x, w_in, b_in, w_hid, b_hid, w_out, b_out, *settings):
        return x.new_empty(x.shape[0], w_out.shape[0], dtype=torch.float32)

    # The kernel's activation codes, from the activation table.
    _SWISH = tl.constexpr(ACTIVATIONS["swish"].kernel_code)
    _RELU = tl.constexpr(ACTIVATIONS["relu"].kernel_code)
    _SINE = tl.constexpr(ACTIVATIONS["sine"].kernel_code)
    _TANH = tl.constexpr(ACTIVATIONS["tanh"].kernel_code)
    _SIGMOID = tl.constexpr(ACTIVATIONS["sigmoid"].kernel_code)
    _SOFTPLUS = tl.constexpr(ACTIVATIONS["softplus"].kernel_code)

    @triton.jit
    def _tanh_approx(z):
        return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [z], dtype=tl.float32, is_pure=True, pack=1)

    @triton.jit
    def _activation(z, ACT: tl.constexpr, W0: tl.constexpr, FAST: tl.constexpr):
        """f(z) in float32; FAST: one hardware tanh instead of exp and a division, for values rounded to bf16 next."""
        if ACT == _SWISH:
            if FAST:
                half = 0.5 * z
                y = half + half * _tanh_approx(half)
            else:
                y = z * tl.sigmoid(z)
        elif ACT == _RELU:
            y = tl.maximum(z, 0.0)
        elif ACT == _SINE:
            y = tl.sin(W0 * z)
        elif ACT == _TANH:
            if FAST:
                y = _tanh_approx(z)
            else:
                y = 2.0 * tl.sigmoid(2.0 * z) - 1.0
        elif ACT == _SIGMOID:
            if FAST:
                y = 0.5 + 0.5 * _tanh_approx(0.5 * z)
            else:
                y = tl.sigmoid(z)
        else:
            tl.static_assert(ACT == _SOFTPLUS, "unknown activation code")
            y = tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z)))
        return y

    @triton.jit
    def _round_bf16(a):
        """float32 a rounded to the nearest bf16 (ties to even), kept in float32: the interpreter's cast truncates."""
        bits = a.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _product(a, b, DOT_FP32: tl.constexpr):
        """a [BM, K] · b [K, N] with bf16 operands and a float32 result."""
        if DOT_FP32:
            out = tl.dot(_round_bf16(a.to(tl.float32)), b.to(tl.float32), input_precision="ieee")
        else:
            out = tl.dot(a.to(tl.bfloat16), b)
        return out

    @triton.jit
    def _mlp_kernel(
        x_ptr, w_in_ptr, b_in_ptr, w_hid_ptr, b_hid_ptr, w_out_ptr, b_out_ptr, y_ptr, M, K_IN, stride_x, stride_y,
        K_PAD: tl.constexpr, H: tl.constexpr, N_HID: tl.constexpr, N_OUT: tl.constexpr,
        ACT: tl.constexpr, W0: tl.constexpr, BM: tl.constexpr, FAST: tl.constexpr, DOT_FP32: tl.constexpr,
    ):
        rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
        row_ok = rows < M
        k = tl.arange(0, K_PAD)
        n = tl.arange(0, H)
        x = tl.load(x_ptr + rows[:, None] * stride_x + k[None, :], mask=row_ok[:, None] & (k < K_IN)[None, :], other=0.0)
        w = tl.load(w_in_ptr + k[:, None] * H + n[None, :])
        z = _product(x, w, DOT_FP32) + tl.load(b_in_ptr + n)[None, :]
        if N_HID > 0:
            h = _activation(z, ACT, W0, FAST)
        else:
            h = _activation(z, ACT, W0, False)
        for layer in tl.static_range(N_HID):
            w = tl.load(w_hid_ptr + layer * H * H + n[:, None] * H + n[None, :])
            z = _product(h, w, DOT_FP32) + tl.load(b_hid_ptr + layer * H + n)[None, :]
            # The last hidden activation feeds the float32 output layer: exact formula there.
            if layer < N_HID - 1:
                h = _activation(z, ACT, W0, FAST)
            else:
                h = _activation(z, ACT, W0, False)
        for j in tl.static_range(N_OUT):
            y = tl.sum(h * tl.load(w_out_ptr + j * H + n)[None, :], axis=1) + tl.load(b_out_ptr + j)
            tl.store(y_ptr + rows * stride_y + j, y, mask=row_ok)

    @triton.jit
    def _mlp_kernel_split2(
        x_ptr, w_in_ptr, b_in_ptr, w_hid_ptr, b_hid_ptr, w_out_ptr, b_out_ptr, y_ptr, M, K_IN, stride_x, stride_y,
        K_PAD: tl.constexpr, H: tl.constexpr, N_HID: tl.constexpr, N_OUT: tl.constexpr,
        ACT: tl.constexpr, W0: tl.constexpr, BM: tl.constexpr, FAST: tl.constexpr, DOT_FP32: tl.constexpr,
    ):
        """As _mlp_kernel, with each activation held as two halves of H/2 features and each product as 2×2 blocks
        (operand tiles a quarter of the size)."""
        HALF: tl.constexpr = H // 2
        rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
        row_ok = rows < M
        k = tl.arange(0, K_PAD)
        n = tl.arange(0, HALF)
        x = tl.load(x_ptr + rows[:, None] * stride_x + k[None, :], mask=row_ok[:, None] & (k < K_IN)[None, :], other=0.0)
        za = _product(x, tl.load(w_in_ptr + k[:, None] * H + n[None, :]), DOT_FP32) + tl.load(b_in_ptr + n)[None, :]
        zb = _product(x, tl.load(w_in_ptr + k[:, None] * H + HALF + n[None, :]), DOT_FP32) + tl.load(b_in_ptr + HALF + n)[None, :]
        if N_HID > 0:
            ha, hb = _activation(za, ACT, W0, FAST), _activation(zb, ACT, W0, FAST)
        else:
            ha, hb = _activation(za, ACT, W0, False), _activation(zb, ACT, W0, False)
        for layer in tl.static_range(N_HID):
            base = w_hid_ptr + layer * H * H
            top = base + n[:, None] * H + n[None, :]  # rows (inputs) of the first half, columns (outputs) of the first half
            bottom = top + HALF * H
            za = _product(ha, tl.load(top), DOT_FP32) + _product(hb, tl.load(bottom), DOT_FP32)
            zb = _product(ha, tl.load(top + HALF), DOT_FP32) + _product(hb, tl.load(bottom + HALF), DOT_FP32)
            za += tl.load(b_hid_ptr + layer * H + n)[None, :]
            zb += tl.load(b_hid_ptr + layer * H + HALF + n)[None, :]
            if layer < N_HID - 1:
                ha, hb = _activation(za, ACT, W0, FAST), _activation(zb, ACT, W0, FAST)
            else:
                ha, hb = _activation(za, ACT, W0, False), _activation(zb, ACT, W0, False)
        for j in tl.static_range(N_OUT):
            wa = tl.load(w_out_ptr + j * H + n)
            wb = tl.load(w_out_ptr + j * H + HALF + n)
            y = tl.sum(ha * wa[None, :], axis=1) + tl.sum(hb * wb[None, :], axis=1) + tl.load(b_out_ptr + j)
            tl.store(y_ptr + rows * stride_y + j, y, mask=row_ok)
