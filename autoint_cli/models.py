"""The networks of AutoInt volume rendering: the radiance field's integral networks and the sampling network.

Φ_σ (1 output) and Φ_c (3 outputs) are integral networks of t with constant
inputs o, d and a ray code q (the unit view direction):

    Φ(t; o, d, q) = MLP([γ(o + t·d), γ_v(q)]),

γ the 1/f-normalised positional encoding, or a multiresolution grid of learned
features (``encoding = hashgrid``, :class:`~autoint_cli.autoint.grid.HashGrid`),
whose trilinear interpolation has an exact derivative along t as well. Their grad networks ∂Φ/∂t are the
density and colour along the ray before activation; both share the very same
parameters. With ``shared_trunk`` one network of 4 outputs serves both (a trunk
with a density head and a colour head).
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .autoint import AutoIntModule, Concat, Constant, Dual, GradNetwork, IntegralNetwork, PositionalEncoding, Product, Sequential, Sum, Variable, mlp
from .autoint.fused import KernelConfig
from .autoint.grid import HashGrid
from .autoint.network import IntegralEvaluator
from .config import ModelConfig
from .utils.fastpath import compile_module
from .volume.rays import Rays
from .volume.sampling import Sections, sections_from_lengths, uniform_sections


def _point_encoding(config: ModelConfig) -> Tuple[AutoIntModule, int]:
    """The encoding of the point x = o + t·d and its width: γ(x) (frequency), or γ(x) beside the multiresolution grid (hashgrid).

    The grid's features are local; γ(x) (``multires`` frequencies, x itself
    among them) keeps the smooth, ray-linear terms (such as x·d) within the
    MLP's reach.
    """
    encoding = PositionalEncoding(config.multires)
    if config.encoding != "hashgrid":
        return encoding, encoding.out_features(3)
    if config.bound <= 0:
        raise ValueError("a hashgrid model needs its bound resolved from the scene (ModelConfig.bound > 0)")
    grid = HashGrid(config.bound, config.grid_levels, config.grid_features, config.grid_log2_size, config.grid_min_res, config.grid_max_res)
    return Concat(encoding, grid), encoding.out_features(3) + grid.out_features()


def _integral_network(config: ModelConfig, out_features: int) -> IntegralNetwork:
    encode, point_width = _point_encoding(config)
    point = Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), encode)
    code = Sequential(Constant(2), PositionalEncoding(config.multires_views))
    width = point_width + PositionalEncoding(config.multires_views).out_features(3)
    body = Sequential(Concat(point, code), mlp(width, config.netwidth, config.netdepth, out_features, config.activation, config.w0, full_precision_output=True,
                                                  skip=config.skip))
    return IntegralNetwork(body, n_constants=3)


class RadianceField(nn.Module):
    """σ and colour along rays, as grad networks (training) or integral networks (rendering).

    Outputs are raw (before relu/sigmoid): the activations apply to section
    means, after integration (:mod:`autoint_cli.volume.rendering`).
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

    def grad_networks(self, compile_mode: Optional[str] = None) -> List[Callable[..., Tensor]]:
        """The grad networks ∂Φ/∂t (new views over the same parameters), compiled when ``compile_mode`` is given.

        Compiled ones have static shapes: the callers keep one batch shape
        (fixed chunks, the last one padded), and a new shape gets its own
        graph rather than a dynamic-shape one. The field is not changed.
        """
        views = [GradNetwork(net) for net in self.networks]
        if compile_mode is None:
            return views
        return [compile_module(view, compile_mode) for view in views]

    def integral_evaluators(self, kernel: Optional[KernelConfig] = None, reduce_output: bool = False) -> Tuple[List[IntegralEvaluator], str]:
        """Gradient-free evaluators of the integral networks (see :meth:`IntegralNetwork.evaluator`), all fused or none.

        Returns (evaluators, why not fused): "" when fused, or ``kernel`` is None.
        """
        pairs = [net.evaluator(kernel, reduce_output) for net in self.networks]
        why = next((reason for _, reason in pairs if reason), "")
        if why:
            pairs = [net.evaluator(None, reduce_output) for net in self.networks]
        return [evaluator for evaluator, _ in pairs], why

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
        return self.evaluate(self.grad_networks(), rays, t)

    def integral(self, rays: Rays, t: Tensor) -> Tensor:
        """Φ at t, in float32 at least (even under bf16 autocast): [*rays, n_samples, 4] (σ in channel 0, colour in 1:4)."""
        return self.evaluate(list(self.networks), rays, t)

    @classmethod
    def evaluate(cls, networks: Sequence[Callable[..., Tensor]], rays: Rays, t: Tensor) -> Tensor:
        """The outputs of ``networks`` (grad or integral, one per field network) at t, joined: [*rays, n_samples, 4].

        Integral outputs are widened to float32 at least: Φ is differenced over short sections.
        """
        consts = cls.constants(rays)
        out = torch.cat([net(t[..., None], *consts) for net in networks], -1)
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
