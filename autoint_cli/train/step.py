"""One training step, callable on its own: a batch of rays in; the loss, its PSNR and whether the step was taken, out.

The step renders the batch with the training renderer (grad networks at M
stratified samples in each of N sections), takes the mean squared error to
the pixels, back-propagates in sub-batches of ``chunk`` rays and updates the
weights with fused Adam, which skips a step whose gradients hold a NaN or inf
on the device, without a host synchronisation. ``autoint-train``, torchrun and
``scripts/bench_train.py`` all run this very step.
"""
import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor, nn

from ..models import RadianceField, SceneModel
from ..render.chunks import chunk_slices
from ..scene import Scene
from ..utils.distributed import SINGLE, Distributed
from ..utils.fastpath import autocast, compile_module, matmul_precision
from ..volume.rays import Rays, pixel_rays
from ..volume.rendering import (colour_variation, density_disagreement, negative_density, post_misfit, render_merged, render_strata,
                                render_training, weight_distortion)
from .guards import nonfinite_flag
from .state import TrainState


@dataclass(frozen=True)
class Batch:
    """This process's share of one step's rays.

    Attributes:
        rays: [n_rays].
        target: [n_rays, 3] the pixels' colours.
        jitter: [n_rays, n_sections, samples_per_section] the samples' offsets in their strata, in [0, 1).
        n_total: rays of the whole step over all processes (the loss is a mean over these).
        sigma_noise: [n_rays, n_sections] noise added to the sections' raw mean density (``raw_noise_std``), or None.
        background: [n_rays, 3] each ray's own background colour (``random_bkgd``; ``target`` is composited on it), or None:
            the scene's.
        post_shift: [n_rays, n_sections − 1] how far each inner post moves, in [−½, ½] of a neighbouring section
            (``post_shift``), or None.
        cross: [n_rays, CROSS_POINTS, 4] points along each ray (u ∈ [0, 1) of [near, far]) and the direction of another
            training pixel's ray to look at each from (``sigma_consistency``), or None.
        pixels: [n_rays] each ray's pixel as one index into the training views, (slot·H + row)·W + col, where the sampler
            keeps the pixels' errors (``sample_by_error``), or None.
        weights: [n_rays] each ray's weight in the squared error (``error_alpha``; mean 1 over the step's rays), or None:
            all 1.
    """

    rays: Rays
    target: Tensor
    jitter: Tensor
    n_total: int
    sigma_noise: Optional[Tensor] = None
    background: Optional[Tensor] = None
    post_shift: Optional[Tensor] = None
    cross: Optional[Tensor] = None
    pixels: Optional[Tensor] = None
    weights: Optional[Tensor] = None


# Points per training ray at which sigma_consistency compares the density of two directions: 2 evaluations each, against
# N·M for the ray itself (a quarter more at N = 16, M = 2).
CROSS_POINTS = 4


class StepInterrupted(Exception):
    """A stop was asked for between the sub-batches of a step: the step was abandoned and the weights left as they were."""


@dataclass(frozen=True)
class StepResult:
    """What one step gives back, as device tensors (reading them synchronises with the device).

    Attributes:
        loss: [] this process's share of the step's mean squared error (the sum over processes is the loss).
        skipped: [] 1.0 when the gradients held a NaN or inf and the weights were left unchanged, else 0.0.
        ray_errors: [local rays] each ray's squared error summed over the colour channels, before the step.
    """

    loss: Tensor
    skipped: Tensor
    ray_errors: Optional[Tensor] = None

    @property
    def psnr(self) -> Tensor:
        """[] −10 log10(loss) of this share (of the whole step in a single process)."""
        return -10 * torch.log10(self.loss.clamp_min(1e-12))


class BatchSampler:
    """Random pixels of the training views and their jitter, from the state's seeded generator.

    Under torchrun every rank draws the same global batch of ``n_rays`` and
    keeps its own block, so K processes take the step one process takes.
    For the first ``precrop_iters`` steps pixels come from the central
    ``precrop_frac`` of each view (NeRF's precrop: early steps see the object,
    not the empty border, so the field does not settle on empty space).
    With ``raw_noise_std`` > 0 each section's raw density also gets Gaussian
    noise of that deviation (NeRF's regulariser against floaters).
    With ``random_bkgd`` each ray gets a background colour b drawn uniformly
    from [0, 1]³ and its pixel is composited again on it by its alpha α:
    target = image + (1 − α)(b − scene background). Against one fixed
    background, density of that very colour in empty space costs nothing
    (white fog on Blender scenes); against a random one it always does.
    With ``post_shift`` s > 0 each inner post of a ray's sections moves by
    u ~ U[−s/2, s/2) of a neighbouring section. With ``cross`` each ray gets
    :data:`CROSS_POINTS` points u ~ U[0, 1) along it, each with the direction of
    the ray of another random training pixel (``sigma_consistency``).
    With ``error_share`` f > 0 (``sample_by_error``), after the precrop steps a
    share f of each batch's rays are drawn with probability proportional to
    the squared error their pixel had when last trained on (:class:`PixelErrors`,
    fed by :meth:`record`) and the rest uniformly, so that steps go where the
    field is still wrong (the object's edges and detail) more than to what it
    already renders (empty background). With ``error_alpha`` a > 0 each ray's
    squared error is then weighted by w ∝ (P·p)^−a, p the probability that the
    mixture drew its pixel and P the training pixels, scaled to a mean of 1 over
    the step: a = 0 trains on the rays as drawn (hard pixels count more), a = 1
    on the uniform objective (the draws only lower its variance). With
    ``error_iters`` K > 0 the share falls linearly from f to 0 over the first
    K steps after the precrop: the error draws speed the start up, and the
    uniform draws have the end.
    """

    def __init__(self, scene: Scene, device: torch.device, n_rays: int, n_sections: int, samples_per_section: int, dist: Distributed = SINGLE,
                 precrop_iters: int = 0, precrop_frac: float = 0.5, raw_noise_std: float = 0.0, random_bkgd: bool = False,
                 post_shift: float = 0.0, cross: bool = False, error_share: float = 0.0, error_alpha: float = 0.0,
                 error_iters: int = 0):
        self.scene, self.device, self.n_rays, self.raw_noise_std = scene, device, n_rays, raw_noise_std
        self.post_shift, self.cross = post_shift, cross
        # Only the training views go to the device, indexed by their place k in i_train (a slot).
        self.images = scene.images[scene.i_train].to(device)
        self.c2w = scene.c2w[scene.i_train].to(device)
        self.random_bkgd = random_bkgd
        self.scene_background = torch.tensor(scene.background, device=device)
        # 1 − α of the training views, where the images have an alpha to composite by.
        self.transparency = 1 - scene.alpha[scene.i_train].to(device) if random_bkgd and scene.alpha is not None else None
        self.jitter_shape = (n_rays, n_sections, samples_per_section)
        self.local = dist.split(n_rays)
        self.precrop_iters = precrop_iters
        h, w = scene.H, scene.W
        crop_h, crop_w = max(1, int(h * precrop_frac)), max(1, int(w * precrop_frac))
        self.crop = (h // 2 - crop_h // 2, w // 2 - crop_w // 2, crop_h, crop_w)  # top, left, height, width
        self.error_share, self.error_alpha, self.error_iters = error_share, error_alpha, error_iters
        self.errors = PixelErrors(self.images.shape[0] * h * w, device) if self.error_share > 0 else None

    def share_at(self, step: int) -> float:
        """The error share of step ``step``: 0 during the precrop, then f, falling linearly to 0 over ``error_iters`` steps
        when that is set."""
        if step < self.precrop_iters:
            return 0.0
        if not self.error_iters:
            return self.error_share
        return self.error_share * max(0.0, 1.0 - (step - self.precrop_iters) / self.error_iters)

    def _pixels(self, generator: torch.Generator, step: int, shape: Optional[Tuple[int, ...]] = None, by_error: int = 0):
        """(slot, row, col) of ``n_rays`` pixels (or of ``shape``), slot k being training view i_train[k]: anywhere, or in the
        central crop while ``step`` < precrop_iters. The first ``by_error`` of them come from the pixels' errors (0 during
        the precrop: the errors' indices are those of whole views)."""
        cropped = step < self.precrop_iters
        top, left, h, w = self.crop if cropped else (0, 0, self.scene.H, self.scene.W)
        index = torch.randint(0, self.images.shape[0] * h * w, shape or (self.n_rays,), generator=generator, device=generator.device)
        if by_error:
            index[:by_error] = self.errors.draw(generator, by_error)
        pixel = index % (h * w)
        return index // (h * w), top + pixel // w, left + pixel % w

    def record(self, batch: Batch, ray_errors: Tensor) -> None:
        """Keeps each of the batch's pixels' squared error [local rays] for the error share of later batches (no-op
        without one)."""
        if self.errors is not None and batch.pixels is not None:
            self.errors.record(batch.pixels, ray_errors)

    def __call__(self, generator: torch.Generator, step: int = 0) -> Batch:
        by_error = round(self.share_at(step) * self.n_rays) if self.errors is not None else 0
        share = by_error / self.n_rays  # what was drawn, for the weights
        views, rows, cols = (x[self.local] for x in self._pixels(generator, step, by_error=by_error))  # views: slots
        jitter = torch.rand(self.jitter_shape, generator=generator, device=self.device)[self.local]
        noise = None
        if self.raw_noise_std > 0:
            noise = self.raw_noise_std * torch.randn(self.jitter_shape[:2], generator=generator, device=self.device)[self.local]
        rays = pixel_rays(self.c2w[views], rows, cols, self.scene.intrinsics, self.scene.near, self.scene.far, self.scene.ndc)
        target, background = self.images[views, rows, cols], None
        if self.random_bkgd:
            # Drawn after the jitter and the noise, so that a run without it draws the very batches it drew before.
            background = torch.rand((self.n_rays, 3), generator=generator, device=self.device)[self.local]
            if self.transparency is not None:
                target = target + self.transparency[views, rows, cols] * (background - self.scene_background)
        shift = None
        if self.post_shift > 0:  # drawn last, for the same reason
            n_inner = self.jitter_shape[1] - 1
            shift = self.post_shift * (torch.rand((self.n_rays, n_inner), generator=generator, device=self.device)[self.local] - 0.5)
        pixels, weights = None, None
        if self.errors is not None:
            pixels = (views * self.scene.H + rows) * self.scene.W + cols
            if self.error_alpha > 0 and share > 0:
                weights = self.errors.relative_probability(pixels, share) ** -self.error_alpha
                weights = (weights / weights.mean()).float()
        cross = self._cross(generator, step) if self.cross else None
        return Batch(rays, target, jitter, self.n_rays, noise, background, shift, cross, pixels, weights)

    def _cross(self, generator: torch.Generator, step: int) -> Tensor:
        """[local rays, CROSS_POINTS, 4]: u ~ U[0, 1) and the direction of another random training pixel's ray (drawn last)."""
        u = torch.rand((self.n_rays, CROSS_POINTS, 1), generator=generator, device=self.device)[self.local]
        views, rows, cols = (x[self.local] for x in self._pixels(generator, step, (self.n_rays, CROSS_POINTS)))
        others = pixel_rays(self.c2w[views], rows, cols, self.scene.intrinsics, self.scene.near, self.scene.far, self.scene.ndc)
        return torch.cat((u, others.directions), -1)


class PixelErrors:
    """The squared error of each training pixel when it was last trained on, and draws of pixels in proportion to it.

    A pixel never drawn counts :data:`UNSEEN_ERROR` (near nothing: the error
    share goes to pixels known to be wrong, and the uniform share finds the
    rest). Draws invert the cumulative sum of the errors, which is made again
    every :data:`ERROR_CDF_EVERY` draws (a sum over every pixel each step would
    cost a few percent of a step), so they follow the errors a few steps late.
    """

    def __init__(self, n_pixels: int, device: torch.device):
        self.errors = torch.full((n_pixels,), UNSEEN_ERROR, device=device)
        self.cdf: Optional[Tensor] = None
        self.draws = 0

    def record(self, pixels: Tensor, errors: Tensor) -> None:
        """pixels [n] (flat indices), errors [n] ≥ 0: the newest error of each."""
        self.errors[pixels] = errors.detach().to(self.errors.dtype)

    def draw(self, generator: torch.Generator, n: int) -> Tensor:
        """[n] pixel indices, each i with probability eᵢ / Σ e (float64 sums: float32 loses small errors among 10⁷ pixels)."""
        if self.cdf is None or self.draws % ERROR_CDF_EVERY == 0:
            self.cdf = torch.cumsum(self.errors.double(), 0)
        self.draws += 1
        u = torch.rand(n, generator=generator, device=self.errors.device, dtype=torch.float64) * self.cdf[-1]
        return torch.searchsorted(self.cdf, u, right=True).clamp_(max=self.errors.numel() - 1)

    def relative_probability(self, pixels: Tensor, share: float) -> Tensor:
        """[n] P·p for pixels [n]: p = (1 − f)/P + f·eᵢ/Σ e, the probability that a batch with error share f drew pixel i
        by the last :meth:`draw`'s sums, and P the pixels (P·p is 1 for every pixel when the draws are uniform)."""
        cdf = self.cdf
        mass = cdf[pixels] - torch.where(pixels > 0, cdf[(pixels - 1).clamp_(min=0)], torch.zeros_like(cdf[:1]))
        return (1 - share) + share * self.errors.numel() * mass / cdf[-1]


# The error a pixel counts before it is first drawn (sample_by_error): small against any error worth a step (a 40 dB pixel
# is 3e-4 over three channels), so that the error share starts on pixels known to be wrong.
UNSEEN_ERROR = 1e-6
# Draws between two cumulative sums of the pixels' errors (sample_by_error).
ERROR_CDF_EVERY = 8


@dataclass(frozen=True)
class Penalties:
    """Weights of the regularisers added to the mean squared error for the gradients (0: off, and not computed).

    Attributes:
        smooth_rgb: λ of the mean :func:`~autoint_cli.volume.rendering.colour_variation` of the rays.
        negative_sigma: μ of the mean :func:`~autoint_cli.volume.rendering.negative_density` of the rays.
        sigma_consistency: ν of the mean :func:`~autoint_cli.volume.rendering.density_disagreement` of the rays (their
            batch's ``cross`` points).
        distortion: κ of the mean :func:`~autoint_cli.volume.rendering.weight_distortion` of the rays.
        strata_loss: β of the squared error of :func:`~autoint_cli.volume.rendering.render_strata` (the same samples
            composited on N·M sections), per colour channel as the main error is.
        sampler_fit: γ of the mean :func:`~autoint_cli.volume.rendering.post_misfit` of the rays (floor
            :data:`SAMPLER_FIT_FLOOR`), which reaches the sampling network only.
        coarse_loss: η of the squared error of :func:`~autoint_cli.volume.rendering.render_merged` with the sections merged
            two at a time (the render at N/2), per colour channel as the main error is.
    """

    smooth_rgb: float = 0.0
    negative_sigma: float = 0.0
    sigma_consistency: float = 0.0
    distortion: float = 0.0
    strata_loss: float = 0.0
    sampler_fit: float = 0.0
    coarse_loss: float = 0.0


# The share of sampler_fit's target that is spread evenly along the ray: with N = 32 sections a quarter of them (8) stay
# spread over the empty stretches, where a surface the field has not found yet may be, and the rest gather on the weight.
SAMPLER_FIT_FLOOR = 0.25


class TrainingLoss(nn.Module):
    """The training renderer and the squared error as one module, so that one torch.compile graph (and DistributedDataParallel's hooks) covers both.

    ``forward(origins, directions, near, far, target, jitter, background, sigma_noise, post_shift, cross, weights)``
    takes the tensors of a sub-batch of rays (tensors, not a :class:`Rays`, so
    a compiled graph guards on shapes only; ``background`` is [3], or [n_rays, 3]
    with a colour per ray) and returns (Σ w e, Σ (λ V + μ D + ν Δ + κ Ω + β E + γ P + η C), e):
    the sums over the sub-batch, [] each, and e [n_rays] each ray's Σ (rgb − target)² over
    its channels (no gradient), w the rays' ``weights`` (1 when None); V the :func:`colour_variation`, D the
    :func:`negative_density`, Δ the :func:`density_disagreement`, Ω the
    :func:`weight_distortion` of each ray, E its mean squared error over the colour channels
    rendered on the strata (:func:`render_strata`), P its :func:`post_misfit` and C its mean
    squared error rendered on half as many sections (:func:`render_merged`), λ, μ, ν, κ, β, γ
    and η the :class:`Penalties` (a term of weight 0 is not computed).
    """

    def __init__(self, model: SceneModel, penalties: Penalties = Penalties()):
        super().__init__()
        self.model, self.penalties = model, penalties
        self.grad = functools.partial(RadianceField.evaluate, model.field.grad_networks())

    def forward(self, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor, target: Tensor, jitter: Tensor, background: Tensor,
                sigma_noise: Optional[Tensor] = None, post_shift: Optional[Tensor] = None,
                cross: Optional[Tensor] = None, weights: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        rays = Rays(origins, directions, near, far)
        m, kappa = self.model.config.samples_per_section, self.model.config.colour_by_density
        out = render_training(self.grad, self.model.sections, rays, background, m, jitter=jitter, sigma_noise=sigma_noise, post_shift=post_shift,
                              colour_by_density=kappa)
        ray_errors = torch.sum((out.rgb.float() - target) ** 2, -1)
        squared = ray_errors.sum() if weights is None else torch.sum(weights * ray_errors)
        penalty = torch.zeros_like(squared)
        if self.penalties.smooth_rgb > 0:
            penalty = penalty + self.penalties.smooth_rgb * colour_variation(out.samples).sum()
        if self.penalties.negative_sigma > 0:
            penalty = penalty + self.penalties.negative_sigma * negative_density(out.samples, rays.span).sum()
        if self.penalties.sigma_consistency > 0 and cross is not None:
            penalty = penalty + self.penalties.sigma_consistency * density_disagreement(self.grad, rays, cross).sum()
        if self.penalties.distortion > 0:
            # The posts are the sampler's; the penalty moves density, not the sections it is measured on.
            penalty = penalty + self.penalties.distortion * weight_distortion(out.weights, out.posts.detach(), near, far).sum()
        if self.penalties.strata_loss > 0:
            fine = render_strata(out, directions.norm(dim=-1, keepdim=True), background, kappa)
            penalty = penalty + self.penalties.strata_loss * torch.sum((fine.rgb - target) ** 2) / 3
        if self.penalties.sampler_fit > 0:
            penalty = penalty + self.penalties.sampler_fit * post_misfit(out.weights, out.posts, SAMPLER_FIT_FLOOR).sum()
        if self.penalties.coarse_loss > 0:
            coarse = render_merged(out, 2, directions.norm(dim=-1, keepdim=True), background, kappa)
            penalty = penalty + self.penalties.coarse_loss * torch.sum((coarse.rgb - target) ** 2) / 3
        return squared, penalty, ray_errors.detach()


class TrainStep:
    """Advances a :class:`TrainState` by one step.

    Args:
        model: the state's model (left as it was: what is compiled is a new view of it).
        background: [3] the scene's background colour, on the training device.
        precision: one of :data:`~autoint_cli.utils.fastpath.PRECISIONS`.
        compile_mode: torch.compile the whole loss of a sub-batch (sampling network, grad networks, compositing, error) and its
            backward in this mode (None: eager). ``reduce-overhead`` replays them as CUDA graphs: the sub-batches have one shape.
        chunk: rays per forward/backward sub-batch (bounds memory; gradients add up to the whole batch's).
        dist: this process among torchrun's; gradients are averaged by DistributedDataParallel.
        penalties: the regularisers added to the mean squared error for the gradients (the loss reported stays the squared
            error).
    """

    def __init__(self, model: SceneModel, background: Tensor, precision: str = "tf32", compile_mode: Optional[str] = None, chunk: int = 4096,
                 dist: Distributed = SINGLE, penalties: Penalties = Penalties()):
        self.background, self.precision, self.chunk, self.dist = background, precision, chunk, dist
        self.device = background.device
        loss = TrainingLoss(model, penalties)
        self.loss: nn.Module = loss if compile_mode is None else compile_module(loss, compile_mode)
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            # Around the compiled module, so that DDP's hooks stay outside the graphs. Every trainable parameter gets a gradient
            # each step (the model froze the ones that cannot), so DDP need not search for unused ones.
            self.loss = DistributedDataParallel(self.loss, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, state: TrainState, batch: Batch, interrupted: Optional[Callable[[], bool]] = None) -> StepResult:
        """One step on ``batch``. ``interrupted`` is asked between sub-batches (one process only: under torchrun every rank must
        take the same decision, at step boundaries); when it says yes the step is abandoned (:class:`StepInterrupted`)."""
        lr = state.schedule(state.step)
        for group in state.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        state.optimizer.zero_grad(set_to_none=True)
        with matmul_precision(self.precision):
            loss, ray_errors = self._backward(batch, None if self.dist.active else interrupted)
            # Read by Adam.step as torch.amp.GradScaler would set it. The gradients are the same on every rank after the
            # all-reduce, so every rank takes the same decision.
            skipped = nonfinite_flag([p.grad for p in self.params if p.grad is not None])
            state.optimizer.found_inf = skipped
            state.optimizer.step()
        state.step += 1
        return StepResult(loss, skipped, ray_errors)

    def _backward(self, batch: Batch, interrupted: Optional[Callable[[], bool]]) -> Tuple[Tensor, Tensor]:
        """Accumulates the gradients of the batch's loss over sub-batches of ``chunk`` rays; returns this share's loss and
        its rays' squared errors [local rays]."""
        total, ray_errors = torch.zeros((), device=self.device), []
        n_local = batch.target.shape[0]
        parts = chunk_slices(n_local, self.chunk)
        for part in parts:
            if interrupted is not None and part is not parts[0] and interrupted():
                raise StepInterrupted()
            # Gradients are all-reduced once per step, on the last sub-batch.
            last = part is parts[-1]
            sync = contextlib.nullcontext() if last or not self.dist.active else self.loss.no_sync()
            rays = batch.rays[part]
            noise = None if batch.sigma_noise is None else batch.sigma_noise[part]
            shift = None if batch.post_shift is None else batch.post_shift[part]
            cross = None if batch.cross is None else batch.cross[part]
            background = self.background if batch.background is None else batch.background[part]
            weights = None if batch.weights is None else batch.weights[part]
            with sync:
                with autocast(self.precision, self.device):
                    fit, penalty, errors = self.loss(rays.origins, rays.directions, rays.near, rays.far, batch.target[part],
                                                     batch.jitter[part], background, noise, shift, cross, weights)
                # Copied now: a CUDA-graph replay's outputs are overwritten by the next replay.
                ray_errors.append(errors.clone())
                # This sub-batch's share of the rank's mean; DDP then averages the ranks' gradients.
                ((fit / 3 + penalty) / n_local).backward()
            # The loss reported is the plain mean squared error, whatever the weights.
            total += errors.sum().detach() / (3 * n_local * self.dist.world_size)
        return total, torch.cat(ray_errors)
