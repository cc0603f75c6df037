"""The networks of AutoInt volume rendering: the radiance field's integral networks and the sampling network.

Φ_σ (1 output) and Φ_c (3 outputs) are integral networks of t with constant
inputs o, d and a ray code q (the unit view direction):

    Φ(t; o, d, q) = MLP([γ(o + t·d), γ_v(q)]),

γ the 1/f-normalised positional encoding. Their grad networks ∂Φ/∂t are the
density and colour along the ray before activation; both share the very same
parameters. With ``shared_trunk`` one network of 4 outputs serves both (a trunk
with a density head and a colour head).
"""
from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .autoint import Concat, Constant, Dual, GradNetwork, IntegralNetwork, PositionalEncoding, Product, Sequential, Sum, Variable, mlp
from .config import ModelConfig
from .rays import Rays
from .sampling import Sections, sections_from_lengths, uniform_sections


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_module(fn: Callable, mode: str = "default", padding: bool = True) -> Callable:
    """torch.compile of a module or function with static shapes, in one of torch's :data:`COMPILE_MODES`.

    ``padding`` False turns off Inductor's padding of tensor strides. Rendering
    needs that: with torch 2.11 on an H100, the padded strides made the
    one-graph renderer return a wrong Φ at 160,000 rays a chunk (an error of
    53 where Φ reaches 71; features and MLP compiled apart were right).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; expected one of {', '.join(COMPILE_MODES)}")
    if padding:
        return torch.compile(fn, mode=mode, dynamic=False)
    from torch._inductor import list_mode_options

    # torch.compile takes a mode or options, not both: the mode's own options, padding off.
    options = {**list_mode_options(mode), "comprehensive_padding": False}
    return torch.compile(fn, options=options, dynamic=False)


def _integral_network(config: ModelConfig, out_features: int) -> IntegralNetwork:
    point = Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), PositionalEncoding(config.multires))
    code = Sequential(Constant(2), PositionalEncoding(config.multires_views))
    width = PositionalEncoding(config.multires).out_features(3) + PositionalEncoding(config.multires_views).out_features(3)
    body = Sequential(Concat(point, code), mlp(width, config.netwidth, config.netdepth, out_features, config.activation, config.w0, full_precision_output=True))
    return IntegralNetwork(body, n_constants=3)


class RadianceField(nn.Module):
    """σ and colour along rays, as grad networks (training) or integral networks (rendering).

    Outputs are raw (before relu/sigmoid): the activations apply to section
    means, after integration (:mod:`autoint_cli.render`).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        outputs = [4] if config.shared_trunk else [1, 3]
        self.networks = nn.ModuleList([_integral_network(config, n) for n in outputs])
        # Parameters that only add a constant to Φ never get a gradient; frozen, so that
        # DistributedDataParallel need not search the graph for unused parameters every step.
        probe = torch.full((1, 1), 0.5), torch.ones(1, 3), torch.ones(1, 3), torch.ones(1, 3)
        for net in self.networks:
            for name in net.parameters_unused_by_grad(*probe):
                net.get_parameter(name).requires_grad_(False)
        # Derived views over the same modules; kept out of the module tree so the state dict lists each weight once.
        self._grad_networks: List[nn.Module] = [net.grad_network() for net in self.networks]
        self._integral_networks: List[nn.Module] = list(self.networks)

    def compile_grad_networks(self, mode: str = "default") -> None:
        """Wraps the grad networks in torch.compile (the fused fast path on CUDA; ``mode``: one of :data:`COMPILE_MODES`).

        Shapes are static: the callers keep one batch shape (fixed chunks, the
        last one padded), and a new shape gets its own graph rather than a
        dynamic-shape one.
        """
        self._grad_networks = [compile_module(GradNetwork(net), mode) for net in self.networks]

    def compile_integral_networks(self, mode: str = "default") -> None:
        """Wraps the integral networks in torch.compile (``mode``: one of :data:`COMPILE_MODES`)."""
        self._integral_networks = [compile_module(net, mode, padding=False) for net in self.networks]

    def use_fused_mlp(self, enabled: bool = True) -> str:
        """Integral networks through the fused MLP kernel (bf16 products, Φ's output in float32) when not differentiated.

        Returns "" when on (or ``enabled`` is False), else why not.
        """
        reasons = [net.use_fused_mlp(enabled) for net in self.networks]
        if any(reasons):
            for net in self.networks:
                net.use_fused_mlp(False)
        return next((r for r in reasons if r), "")

    @staticmethod
    def constants(rays: Rays) -> Tuple[Tensor, Tensor, Tensor]:
        """(o, d, q) as [*rays, 1, 3] each, broadcasting over the samples of a ray."""
        viewdirs = F.normalize(rays.directions, dim=-1)
        return rays.origins[..., None, :], rays.directions[..., None, :], viewdirs[..., None, :]

    def grad(self, rays: Rays, t: Tensor) -> Tensor:
        """∂Φ/∂t: raw density and colour at samples.

        Args:
            rays: [*rays].
            t: [*rays, n_samples].

        Returns:
            [*rays, n_samples, 4]: σ in channel 0, colour in 1:4.
        """
        consts = self.constants(rays)
        return torch.cat([net(t[..., None], *consts) for net in self._grad_networks], -1)

    def integral(self, rays: Rays, t: Tensor) -> Tensor:
        """Φ at t, in float32 at least (even under bf16 autocast): [*rays, n_samples, 4] (σ in channel 0, colour in 1:4)."""
        consts = self.constants(rays)
        out = torch.cat([net(t[..., None], *consts) for net in self._integral_networks], -1)
        return out.to(torch.promote_types(out.dtype, torch.float32))


class SamplingNetwork(nn.Module):
    """A ReLU MLP of the encoded ray (o, d) giving N section lengths, normalised to [near, far]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.encode = PositionalEncoding(config.sampler_multires, normalize=False)
        width = 2 * self.encode.out_features(3)
        layers: List[nn.Module] = []
        sizes = [width] + [config.sampler_width] * (config.sampler_depth - 1)
        for i in range(config.sampler_depth - 1):
            layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
        head = nn.Linear(sizes[-1], config.n_sections)
        # A zero head starts from uniform sections.
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.mlp = nn.Sequential(*layers, head)

    def forward(self, rays: Rays) -> Sections:
        features = torch.cat((self._encode(rays.directions), self._encode(rays.origins)), -1)
        return sections_from_lengths(self.mlp(features), rays.near, rays.far)

    def _encode(self, x: Tensor) -> Tensor:
        return self.encode(Dual(x)).primal


class SceneModel(nn.Module):
    """The radiance field and, when ``use_sampler``, the sampling network: one state dict for a checkpoint."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.field = RadianceField(config)
        self.sampler = SamplingNetwork(config) if config.use_sampler else None

    def sections(self, rays: Rays) -> Sections:
        """The trained number of sections, from the sampler or uniform."""
        if self.sampler is None:
            return uniform_sections(rays.near, rays.far, self.config.n_sections)
        return self.sampler(rays)
