"""One training step called directly: the loss it reports, NaN/inf steps skipped by fused Adam, sub-batches, gradient sync under gloo."""
import dataclasses
import os
import time

import pytest
import torch
import torch.multiprocessing as mp

from autoint_cli.autoint import HashGrid
from autoint_cli.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from autoint_cli.models import RadianceField, SceneModel
from autoint_cli.train import Batch, BatchSampler, Penalties, TrainState, TrainStep, save_state, setup_state
from autoint_cli.train.step import CROSS_POINTS, SAMPLER_FIT_FLOOR, PixelErrors
from autoint_cli.utils.distributed import Distributed
from autoint_cli.volume.rays import Rays
from autoint_cli.volume.rendering import (colour_variation, density_disagreement, negative_density, post_misfit, render_merged,
                                          render_strata, render_training, weight_distortion)

from helpers import free_port

MODEL = ModelConfig(n_sections=4, samples_per_section=2, netdepth=2, netwidth=16, multires=3, multires_views=1, sampler_depth=2, sampler_width=16)
N_RAYS = 24


def make_state(lrate=1e-2, seed=0, model: ModelConfig = MODEL) -> TrainState:
    config = TrainConfig(DataConfig(datadir="unused"), model, RunConfig(expname="step", lrate=lrate, seed=seed))
    torch.manual_seed(seed)
    return setup_state(config, SceneModel(model), torch.device("cpu"), None)


def make_batch(seed=1, n=N_RAYS) -> Batch:
    g = torch.Generator().manual_seed(seed)
    origins = 4 * torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    rays = Rays(origins, -origins + 0.3 * torch.randn(n, 3, generator=g), torch.full((n, 1), 2.0), torch.full((n, 1), 6.0))
    return Batch(rays, torch.rand(n, 3, generator=g), torch.rand(n, MODEL.n_sections, MODEL.samples_per_section, generator=g), n)


def float64_batch(batch: Batch, **changed) -> Batch:
    """The batch's rays, target and jitter in float64 (and any field given in ``changed``)."""
    return dataclasses.replace(batch, rays=Rays(*(x.double() for x in dataclasses.astuple(batch.rays))), target=batch.target.double(),
                               jitter=batch.jitter.double(), **changed)


def snapshot(state: TrainState):
    moments = {k: v.clone() for p in state.model.parameters() for k, v in state.optimizer.state.get(p, {}).items() if torch.is_tensor(v)}
    return {k: v.clone() for k, v in state.model.state_dict().items()}, moments


def test_a_step_reports_the_batch_loss_and_moves_the_weights():
    state, batch = make_state(), make_batch()
    background = torch.ones(3)
    with torch.no_grad():
        grad = lambda rays, t: RadianceField.evaluate(state.model.field.grad_networks(), rays, t)  # noqa: E731
        rgb = render_training(grad, state.model.sections, batch.rays, background, MODEL.samples_per_section, jitter=batch.jitter).rgb
    expected = torch.mean((rgb - batch.target) ** 2)
    before, _ = snapshot(state)
    result = TrainStep(state.model, background, precision="fp32", chunk=N_RAYS)(state, batch)
    assert state.step == 1 and result.skipped.item() == 0.0
    torch.testing.assert_close(result.loss, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(result.psnr, -10 * torch.log10(expected), rtol=1e-6, atol=0)
    after, _ = snapshot(state)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert state.optimizer.param_groups[0]["lr"] == state.schedule(0)


@pytest.mark.parametrize("poison", ["target", "rays"])
def test_a_step_with_nan_is_skipped_on_the_device(poison):
    """A NaN in the pixels (or an inf direction) gives NaN gradients: fused Adam leaves weights and moments untouched."""
    state = make_state()
    step = TrainStep(state.model, torch.ones(3), precision="fp32", chunk=8)
    step(state, make_batch(seed=1))  # Adam's moments exist from here on
    before = snapshot(state)
    batch = make_batch(seed=2)
    if poison == "target":
        batch = Batch(batch.rays, batch.target.index_fill(0, torch.tensor([3]), float("nan")), batch.jitter, batch.n_total)
    else:
        directions = batch.rays.directions.clone()
        directions[5] = float("inf")
        batch = Batch(Rays(batch.rays.origins, directions, batch.rays.near, batch.rays.far), batch.target, batch.jitter, batch.n_total)
    result = step(state, batch)
    assert result.skipped.item() == 1.0 and state.step == 2
    after = snapshot(state)
    for key in before[0]:
        assert torch.equal(before[0][key], after[0][key]), key
    for key in before[1]:
        assert torch.equal(before[1][key], after[1][key]), key
    assert step(state, make_batch(seed=3)).skipped.item() == 0.0  # and the next good step is taken


def test_sub_batches_give_the_whole_batch_step():
    """chunk only bounds memory: 24 rays in sub-batches of 7 take the step that one pass of 24 takes."""
    whole, parts = make_state(), make_state()
    batch = make_batch()
    a = TrainStep(whole.model, torch.ones(3), precision="fp32", chunk=N_RAYS)(whole, batch)
    b = TrainStep(parts.model, torch.ones(3), precision="fp32", chunk=7)(parts, batch)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-6, atol=0)
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(parts.model.state_dict()[key], value, rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.parametrize("lam, mu, nu, kappa, beta, gamma, eta", [
    (0.3, 0, 0, 0, 0, 0, 0), (0, 0.02, 0, 0, 0, 0, 0), (0, 0, 0.05, 0, 0, 0, 0), (0, 0, 0, 0.1, 0, 0, 0), (0, 0, 0, 0, 0.7, 0, 0),
    (0, 0, 0, 0, 0, 0.4, 0), (0, 0, 0, 0, 0, 0, 0.6), (0.3, 0.02, 0.05, 0.1, 0.7, 0.4, 0.6)])
def test_penalties_add_their_weighted_terms_to_the_gradients(lam, mu, nu, kappa, beta, gamma, eta):
    """The step's gradients, in sub-batches of 7, are those of mean squared error + λ · mean V + μ · mean D + ν · mean Δ
    + κ · mean Ω + β · the strata render's mean squared error + γ · mean P + η · the render at N/2's mean squared
    error, Ω on posts held fixed and P's targets from weights held fixed (autograd on one pass, float64); the loss
    reported stays the squared error."""
    state, batch = make_state(), make_batch()
    state.model.double()
    g = torch.Generator().manual_seed(5)
    cross = torch.cat((torch.rand(N_RAYS, CROSS_POINTS, 1, generator=g), torch.randn(N_RAYS, CROSS_POINTS, 3, generator=g)), -1).double()
    batch = float64_batch(batch, cross=cross)
    background = torch.ones(3, dtype=torch.float64)
    grad = lambda rays, t: RadianceField.evaluate(state.model.field.grad_networks(), rays, t)  # noqa: E731
    out = render_training(grad, state.model.sections, batch.rays, background, MODEL.samples_per_section, jitter=batch.jitter)
    mse = torch.mean((out.rgb - batch.target) ** 2)
    span = (batch.rays.far - batch.rays.near) * batch.rays.directions.norm(dim=-1, keepdim=True)
    assert negative_density(out.samples, span).min() > 0  # an untrained field has negative raw density on every ray here
    params = [p for p in state.model.parameters() if p.requires_grad]
    objective = mse + lam * colour_variation(out.samples).mean() + mu * negative_density(out.samples, span).mean()
    objective = objective + nu * density_disagreement(grad, batch.rays, cross).mean()
    objective = objective + kappa * weight_distortion(out.weights, out.posts.detach(), batch.rays.near, batch.rays.far).mean()
    fine = render_strata(out, batch.rays.directions.norm(dim=-1, keepdim=True), background)
    objective = objective + beta * torch.mean((fine.rgb - batch.target) ** 2)
    objective = objective + gamma * post_misfit(out.weights, out.posts, SAMPLER_FIT_FLOOR).mean()
    coarse = render_merged(out, 2, batch.rays.directions.norm(dim=-1, keepdim=True), background)
    objective = objective + eta * torch.mean((coarse.rgb - batch.target) ** 2)
    expected = torch.autograd.grad(objective, params, retain_graph=True)
    step = TrainStep(state.model, background, precision="fp32", chunk=7, penalties=Penalties(lam, mu, nu, kappa, beta, gamma, eta))
    loss, _ = step._backward(batch, None)
    torch.testing.assert_close(loss, mse.detach().float(), rtol=1e-6, atol=0)  # the step accumulates its loss in float32
    # The step takes its squared error in float32 (rgb.float()), hence float32 tolerances.
    for p, g in zip(params, expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    plain = torch.autograd.grad(mse, params)
    assert any((p.grad - g).abs().max() > 1e-6 for p, g in zip(params, plain))


def test_post_shift_is_drawn_last_and_within_its_share():
    """post_shift s draws u in [−s/2, s/2) for each inner post after everything else, so the other draws of a batch are unchanged."""
    import tempfile

    from autoint_cli.scene import load_blender
    from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

    with tempfile.TemporaryDirectory() as folder:
        scene = load_blender(write_demo_scene(f"{folder}/s", DemoSceneSpec(size=20, n_train=2, n_val=1, n_test=1)))
    plain = BatchSampler(scene, torch.device("cpu"), 2000, 6, 2)(torch.Generator().manual_seed(0), 0)
    shifted = BatchSampler(scene, torch.device("cpu"), 2000, 6, 2, post_shift=0.6)(torch.Generator().manual_seed(0), 0)
    assert plain.post_shift is None and shifted.post_shift.shape == (2000, 5)
    assert shifted.post_shift.min() >= -0.3 and shifted.post_shift.max() < 0.3 and shifted.post_shift.abs().max() > 0.29
    torch.testing.assert_close(shifted.jitter, plain.jitter, rtol=0, atol=0)
    torch.testing.assert_close(shifted.target, plain.target, rtol=0, atol=0)
    torch.testing.assert_close(shifted.rays.origins, plain.rays.origins, rtol=0, atol=0)


def test_cross_points_are_drawn_last_with_the_directions_of_training_pixels():
    """sigma_consistency's points: u in [0, 1) for CROSS_POINTS per ray, each with the direction of some pixel's ray of the
    (one) training view, drawn after everything else, so the other draws of a batch are unchanged."""
    import tempfile

    from autoint_cli.scene import load_blender
    from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene
    from autoint_cli.volume.rays import pixel_rays

    with tempfile.TemporaryDirectory() as folder:
        scene = load_blender(write_demo_scene(f"{folder}/s", DemoSceneSpec(size=10, n_train=1, n_val=1, n_test=1)))
    plain = BatchSampler(scene, torch.device("cpu"), 500, 6, 2, post_shift=0.5)(torch.Generator().manual_seed(0), 0)
    crossed = BatchSampler(scene, torch.device("cpu"), 500, 6, 2, post_shift=0.5, cross=True)(torch.Generator().manual_seed(0), 0)
    assert plain.cross is None and crossed.cross.shape == (500, CROSS_POINTS, 4)
    for field in ("jitter", "target", "post_shift"):
        torch.testing.assert_close(getattr(crossed, field), getattr(plain, field), rtol=0, atol=0)
    u = crossed.cross[..., 0]
    assert u.min() >= 0 and u.max() < 1 and u.std() > 0.2
    rows, cols = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    every = pixel_rays(scene.c2w[scene.i_train[0]], rows.reshape(-1), cols.reshape(-1), scene.intrinsics, scene.near, scene.far).directions
    exact = "donot_use_mm_for_euclid_dist"  # cdist's matrix-product shortcut is off by 5e-4 in float32
    distance = torch.cdist(crossed.cross[..., 1:].reshape(-1, 3).double(), every.double(), compute_mode=exact).min(-1).values
    assert distance.max() < 1e-6
    assert len({tuple(d) for d in crossed.cross[..., 1:].reshape(-1, 3).tolist()}) > 50  # many pixels, not one


def _rank_step(rank: int, world_size: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        state, batch = make_state(), make_batch()
        share = Distributed(rank, world_size).split(N_RAYS)
        mine = Batch(batch.rays[share], batch.target[share], batch.jitter[share], N_RAYS)
        step = TrainStep(state.model, torch.ones(3), precision="fp32", chunk=5, dist=Distributed(rank, world_size))
        result = step(state, mine)
        torch.save({"model": state.model.state_dict(), "loss": Distributed(rank, world_size).sum(result.loss)}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()
    # gloo's threads can hang the interpreter's teardown (seen once in a few hundred runs): leave without it.
    os._exit(0)


def test_two_gloo_processes_take_the_single_process_step(tmp_path):
    """Each rank steps on its half; DDP's all-reduce averages the gradients: every rank ends with the one-process weights."""
    out = str(tmp_path / "rank")
    ranks = mp.start_processes(_rank_step, args=(2, free_port(), out), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 180
    while not ranks.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail("the two gloo ranks did not finish within 180 s")
    single = make_state()
    loss = TrainStep(single.model, torch.ones(3), precision="fp32", chunk=N_RAYS)(single, make_batch()).loss
    for rank in range(2):
        saved = torch.load(f"{out}.{rank}", weights_only=True)
        torch.testing.assert_close(saved["loss"], loss, rtol=1e-6, atol=0)
        for key, value in single.model.state_dict().items():
            # float32 sums over rays in another order: a few ulps, through one Adam step.
            torch.testing.assert_close(saved["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert os.path.exists(f"{out}.1")


def test_precrop_draws_from_the_central_crop_first():
    """NeRF's precrop: for the first precrop_iters steps, rows and cols stay in the central precrop_frac of the view; raw_noise_std's noise."""
    import tempfile

    from autoint_cli.scene import load_blender
    from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

    with tempfile.TemporaryDirectory() as folder:
        scene = load_blender(write_demo_scene(f"{folder}/s", DemoSceneSpec(size=20, n_train=2, n_val=1, n_test=1)))
    sampler = BatchSampler(scene, torch.device("cpu"), 4000, 4, 2, precrop_iters=5, precrop_frac=0.5)
    generator = torch.Generator().manual_seed(0)
    early = sampler._pixels(generator, 4)
    late = sampler._pixels(generator, 5)
    assert early[1].min() == 5 and early[1].max() == 14 and early[2].min() == 5 and early[2].max() == 14  # rows/cols 5..14 of 20
    assert late[1].min() == 0 and late[1].max() == 19 and set(early[0].tolist()) == {0, 1}
    batch = sampler(generator, 0)
    pixels = scene.images[early[0][:1], early[1][:1], early[2][:1]]
    assert batch.target.shape == (4000, 3) and pixels.shape == (1, 3) and batch.sigma_noise is None
    noisy = BatchSampler(scene, torch.device("cpu"), 4000, 4, 2, raw_noise_std=2.0)(generator, 0)
    # 16,000 normal draws: the sample deviation is within 3% of 2 (about 5 standard errors).
    assert noisy.sigma_noise.shape == (4000, 4) and abs(noisy.sigma_noise.std().item() - 2.0) < 0.06


def with_cross(batch: Batch, seed: int) -> Batch:
    """The batch with sigma_consistency's points: u and another direction per point."""
    g = torch.Generator().manual_seed(seed)
    n = batch.target.shape[0]
    cross = torch.cat((torch.rand(n, CROSS_POINTS, 1, generator=g), torch.randn(n, CROSS_POINTS, 3, generator=g)), -1)
    return dataclasses.replace(batch, cross=cross)


def test_a_step_with_colour_by_density_takes_autograds_gradients():
    """With κ = colour_by_density the step's gradients, in sub-batches of 7, are autograd's of the mean squared error of
    the training render activated with κ (float64), and differ from those of the plain mean colour."""
    state = make_state(model=dataclasses.replace(MODEL, colour_by_density=0.5))
    state.model.double()
    batch = float64_batch(make_batch())
    background = torch.ones(3, dtype=torch.float64)
    grad = lambda rays, t: RadianceField.evaluate(state.model.field.grad_networks(), rays, t)  # noqa: E731
    params = [p for p in state.model.parameters() if p.requires_grad]
    expected, plain = (torch.autograd.grad(torch.mean((render_training(grad, state.model.sections, batch.rays, background,
                                                                       MODEL.samples_per_section, jitter=batch.jitter,
                                                                       colour_by_density=k).rgb - batch.target) ** 2), params)
                       for k in (0.5, 0.0))
    TrainStep(state.model, background, precision="fp32", chunk=7)._backward(batch, None)
    for p, g in zip(params, expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    assert any((p.grad - g).abs().max() > 1e-6 for p, g in zip(params, plain))


def weighted(batch: Batch, seed: int) -> Batch:
    """The batch with a weight per ray (sample_by_error's error_alpha), of mean 1."""
    weights = torch.rand(batch.target.shape[0], generator=torch.Generator().manual_seed(seed)) * 2
    return dataclasses.replace(batch, weights=weights / weights.mean())


@pytest.mark.parametrize("penalties, kappa, weigh", [(Penalties(), 0.0, False), (Penalties(1e-3, 1e-3, 1e-3, 0.0, 0.5), 0.0, False),
                                                     (Penalties(), 0.5, False), (Penalties(), 0.0, True)])
def test_the_compiled_step_takes_the_eager_step(penalties, kappa, weigh):
    """torch.compile over the whole sub-batch loss and its backward: the same loss and the same weights after two steps (float32 on the CPU),
    with and without the penalties (and their cross points), with colour_by_density, and with weighted rays."""
    model = dataclasses.replace(MODEL, colour_by_density=kappa)
    eager, compiled = make_state(model=model), make_state(model=model)
    eager_step = TrainStep(eager.model, torch.ones(3), precision="fp32", chunk=N_RAYS, penalties=penalties)
    compiled_step = TrainStep(compiled.model, torch.ones(3), precision="fp32", compile_mode="default", chunk=N_RAYS, penalties=penalties)
    for seed in (1, 2):
        batch = with_cross(make_batch(seed), seed)
        batch = weighted(batch, seed) if weigh else batch
        a, b = eager_step(eager, batch), compiled_step(compiled, batch)
        torch.testing.assert_close(b.loss, a.loss, rtol=1e-5, atol=1e-7)
    after_eager, after_compiled = eager.model.state_dict(), compiled.model.state_dict()
    for name in after_eager:
        # Adam's first steps move each weight by about lrate whatever the gradient's size: compare to a share of lrate.
        torch.testing.assert_close(after_compiled[name], after_eager[name], rtol=0, atol=1e-4, msg=name)


GRID_MODEL = dataclasses.replace(MODEL, encoding="hashgrid", bound=1.5, grid_levels=2, grid_features=2, grid_log2_size=8, grid_min_res=2,
                                 grid_max_res=4)


def grid_state(run_dir=None, **run) -> TrainState:
    config = TrainConfig(DataConfig(datadir="unused"), GRID_MODEL, RunConfig(expname="grid", lrate=1e-2, **run))
    torch.manual_seed(0)
    return setup_state(config, SceneModel(GRID_MODEL), torch.device("cpu"), run_dir), config


def test_a_grids_tables_take_their_own_learning_rate_and_epsilon():
    state, _ = grid_state(grid_lrate=5e-2, adam_eps=1e-15)
    others, tables = state.optimizer.param_groups
    grids = [m.table for m in state.model.modules() if isinstance(m, HashGrid)]  # one per network: σ and colour
    assert len(grids) == 2 and [id(p) for p in tables["params"]] == [id(p) for p in grids]
    assert others["eps"] == tables["eps"] == 1e-15
    TrainStep(state.model, torch.ones(3), precision="fp32", chunk=N_RAYS)(state, make_batch())
    assert others["lr"] == pytest.approx(state.schedule(0)) and tables["lr"] == pytest.approx(5 * state.schedule(0))
    # Without grid_lrate the tables follow lrate; a model without a grid has one group.
    plain, _ = grid_state()
    assert plain.optimizer.param_groups[1]["lr_scale"] == 1.0
    assert len(make_state().optimizer.param_groups) == 1


def test_a_resumed_run_takes_its_configs_table_rate_and_epsilon(tmp_path):
    state, config = grid_state(grid_lrate=5e-2, adam_eps=1e-15)
    TrainStep(state.model, torch.ones(3), precision="fp32", chunk=N_RAYS)(state, make_batch())
    save_state(state, config, tmp_path)
    resumed, _ = grid_state(tmp_path, grid_lrate=2e-2, adam_eps=1e-10)
    assert resumed.step == 1
    assert [g["lr_scale"] for g in resumed.optimizer.param_groups] == [1.0, pytest.approx(2.0)]
    assert [g["eps"] for g in resumed.optimizer.param_groups] == [1e-10, 1e-10]


def small_scene(folder, **spec):
    from autoint_cli.scene import load_blender
    from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

    return load_blender(write_demo_scene(f"{folder}/s", DemoSceneSpec(**spec)))


def test_a_random_background_recomposites_each_pixel_by_its_alpha(tmp_path):
    """random_bkgd: target = rgb·α + (1 − α)·b with b drawn per ray, from the RGBA file itself; without it the batches are unchanged."""
    import imageio.v3 as iio

    scene = small_scene(tmp_path, size=20, n_train=3, n_val=1, n_test=1)
    plain = BatchSampler(scene, torch.device("cpu"), 3000, 4, 2)(torch.Generator().manual_seed(0), 0)
    sampler = BatchSampler(scene, torch.device("cpu"), 3000, 4, 2, random_bkgd=True)
    generator = torch.Generator().manual_seed(0)
    views, rows, cols = sampler._pixels(torch.Generator().manual_seed(0), 0)
    batch = sampler(generator, 0)
    # The same rays and jitter as without it: the colours are drawn last.
    torch.testing.assert_close(batch.jitter, plain.jitter, rtol=0, atol=0)
    torch.testing.assert_close(batch.rays.directions, plain.rays.directions, rtol=0, atol=0)
    assert plain.background is None and batch.background.shape == (3000, 3)
    assert 0 <= batch.background.min() and batch.background.max() < 1 and batch.background.std() > 0.25
    rgba = torch.stack([torch.from_numpy(iio.imread(tmp_path / f"s/train/r_{i}.png").astype("float32") / 255) for i in range(3)])
    pixels = rgba[views, rows, cols]
    alpha = pixels[:, 3:]
    expected = pixels[:, :3] * alpha + (1 - alpha) * batch.background
    torch.testing.assert_close(batch.target, expected, rtol=0, atol=1e-6)
    # Both kinds of pixel were drawn: empty ones take the drawn colour, opaque ones keep their own.
    assert (alpha == 0).any() and (alpha == 1).any()


def test_a_random_background_on_opaque_photos_keeps_the_pixels():
    """Images without alpha (photos): the target is the pixel; the rays still get their own background colour to render over.
    The training views are 2 and 0 of 3, in that order: the sampler's slots 0 and 1."""
    scene_images = torch.rand(3, 6, 6, 3)
    from autoint_cli.scene import Scene
    from autoint_cli.volume.rays import Intrinsics

    train = torch.tensor([2, 0])
    scene = Scene("photos", scene_images, torch.eye(4)[:3].expand(3, 3, 4).clone(), Intrinsics.from_focal(6, 6, 5.0), 2.0, 6.0,
                  train, torch.tensor([1]), torch.tensor([1]), torch.eye(4)[:3][None].clone())
    batch = BatchSampler(scene, torch.device("cpu"), 50, 4, 2, random_bkgd=True)(torch.Generator().manual_seed(3), 0)
    slots, rows, cols = BatchSampler(scene, torch.device("cpu"), 50, 4, 2)._pixels(torch.Generator().manual_seed(3), 0)
    assert set(slots.tolist()) == {0, 1}
    torch.testing.assert_close(batch.target, scene_images[train[slots], rows, cols], rtol=0, atol=0)
    assert batch.background.shape == (50, 3)


def test_the_step_renders_each_ray_over_its_own_background():
    """A batch with a colour per ray: the step's loss is the squared error of the training render composited on those colours."""
    state, batch = make_state(), make_batch()
    colours = torch.rand(N_RAYS, 3, generator=torch.Generator().manual_seed(5))
    batch = dataclasses.replace(batch, background=colours)
    with torch.no_grad():
        grad = lambda rays, t: RadianceField.evaluate(state.model.field.grad_networks(), rays, t)  # noqa: E731
        out = render_training(grad, state.model.sections, batch.rays, colours, MODEL.samples_per_section, jitter=batch.jitter)
    # An untrained field is partly transparent, so the colours behind it matter to the loss.
    assert (out.acc < 0.9).any()
    expected = torch.mean((out.rgb - batch.target) ** 2)
    result = TrainStep(state.model, torch.ones(3), precision="fp32", chunk=7)(state, batch)
    torch.testing.assert_close(result.loss, expected, rtol=1e-6, atol=0)


def background_opacity(model, scene) -> float:
    """Mean opacity that the integral renderer gives the val views' empty pixels (α = 0 in the files)."""
    from autoint_cli.render.renderer import Renderer, RenderSettings
    from autoint_cli.volume.rays import camera_rays

    renderer = Renderer(model, torch.tensor(scene.background), RenderSettings(precision="fp32"))
    values = []
    for view in scene.i_val:
        acc = renderer.render(camera_rays(scene.c2w[view], scene.intrinsics, scene.near, scene.far)).acc[..., 0]
        values.append(acc[scene.alpha[view][..., 0] < 0.01].mean())
    return torch.stack(values).mean().item()


def test_a_random_background_removes_white_fog_that_a_white_one_leaves(tmp_path):
    """The floater of lego's bad views (docs/QUALITY.md), on a small scene: a field that starts filled with white fog.

    Against the scene's white background the fog costs nothing where rays see only empty space, so training keeps it (the old
    code's behaviour); against a random colour per ray it costs on every empty pixel, and it goes.
    """
    model_config = ModelConfig(n_sections=8, samples_per_section=2, netdepth=3, netwidth=32, multires=4, multires_views=1,
                               shared_trunk=True, sampler_depth=2, sampler_width=32)
    config = TrainConfig(DataConfig(datadir="unused"), model_config, RunConfig(expname="fog", lrate=5e-3, lrate_decay=5))
    scene = small_scene(tmp_path, size=32, n_train=20, n_val=4, n_test=1)
    torch.manual_seed(0)
    foggy = setup_state(config, SceneModel(model_config), torch.device("cpu"), None)
    # Fog: taught to be opaque and white everywhere, by white images in front of a black background.
    fog = dataclasses.replace(scene, images=torch.ones_like(scene.images), alpha=None, background=(0.0, 0.0, 0.0))
    sample, step = BatchSampler(fog, torch.device("cpu"), 256, 8, 2), TrainStep(foggy.model, torch.zeros(3), precision="fp32", chunk=256)
    for _ in range(100):
        step(foggy, sample(foggy.generator, foggy.step))
    assert background_opacity(foggy.model, scene) > 0.95
    opacity = {}
    for random_bkgd in (False, True):
        torch.manual_seed(0)
        state = setup_state(config, SceneModel(model_config), torch.device("cpu"), None)
        state.model.load_state_dict(foggy.model.state_dict())
        sample = BatchSampler(scene, torch.device("cpu"), 256, 8, 2, random_bkgd=random_bkgd)
        step = TrainStep(state.model, torch.ones(3), precision="fp32", chunk=256)
        for _ in range(300):
            step(state, sample(state.generator, state.step))
        opacity[random_bkgd] = background_opacity(state.model, scene)
    # Measured: the white background leaves 0.9 (when written) or 0.47 (a later two-thread run), random ones 0.04-0.05. How
    # much fog the white background leaves is chaotic (the threads' summation order changes it); that it leaves some is not.
    assert opacity[False] > 0.3, opacity
    assert opacity[True] < 0.15 and opacity[True] < opacity[False] / 4, opacity


def val_psnr(model, scene) -> float:
    """Mean PSNR of the integral renderer over the val views."""
    from autoint_cli.render.renderer import Renderer, RenderSettings
    from autoint_cli.volume.rays import camera_rays

    renderer = Renderer(model, torch.tensor(scene.background), RenderSettings(precision="fp32"))
    values = []
    for view in scene.i_val:
        rgb = renderer.render(camera_rays(scene.c2w[view], scene.intrinsics, scene.near, scene.far)).rgb
        values.append(-10 * torch.log10(torch.mean((rgb - scene.images[view]) ** 2)))
    return torch.stack(values).mean().item()


def test_negative_sigma_clears_the_haze_that_unseen_views_show_without_it(tmp_path):
    """The fog of lego's bad views that a random background leaves (docs/QUALITY.md, eleventh session), on a small scene.

    Opaque shapes seen from 20-75 degrees above the horizon while training and from 5-12 degrees in val: every val ray looks
    along a direction no training ray had. Trained with random backgrounds alone (the old recipe), the val views fill with
    haze; the penalty on negative raw density, which keeps a section's mean from cancelling density it holds, clears much of it.
    """
    model_config = ModelConfig(n_sections=8, samples_per_section=2, netdepth=3, netwidth=32, multires=4, multires_views=1,
                               shared_trunk=True, sampler_depth=2, sampler_width=32)
    config = TrainConfig(DataConfig(datadir="unused"), model_config, RunConfig(expname="haze", lrate=5e-3, lrate_decay=50))
    scene = small_scene(tmp_path, size=32, n_train=40, n_val=4, n_test=1, opaque_density=300.0, train_elevation=(20.0, 75.0),
                        holdout_elevation=(5.0, 12.0))
    opacity, psnr = {}, {}
    for mu in (0.0, 1e-3):
        torch.manual_seed(0)
        state = setup_state(config, SceneModel(model_config), torch.device("cpu"), None)
        sample = BatchSampler(scene, torch.device("cpu"), 512, 8, 2, random_bkgd=True)
        step = TrainStep(state.model, torch.ones(3), precision="fp32", chunk=512, penalties=Penalties(negative_sigma=mu))
        for _ in range(1200):
            step(state, sample(state.generator, state.step))
        with torch.no_grad():
            opacity[mu], psnr[mu] = background_opacity(state.model, scene), val_psnr(state.model, scene)
    # Measured with one thread, seeds 0-2 of the initialisation: without the penalty opacity 0.20 / 0.17 / 0.41 on the val
    # views' empty pixels and 15.2 / 14.6 / 11.4 dB; with it 0.12 / 0.11 / 0.12 and 18.0 / 17.1 / 17.2 dB.
    assert opacity[0.0] > 0.12, opacity
    assert opacity[1e-3] < 0.8 * opacity[0.0], opacity
    assert psnr[1e-3] > psnr[0.0] + 1.0, psnr


def test_pixel_errors_draw_each_pixel_in_proportion_to_its_error():
    """PixelErrors: 60,000 draws follow eᵢ / Σ e (a pixel of error 0 is never drawn), and relative_probability is P·p of
    the mixture with error share f, by hand (float64)."""
    errors = PixelErrors(6, torch.device("cpu"))
    e = torch.tensor([0.0, 1.0, 3.0, 0.0, 0.5, 5.5])
    errors.record(torch.arange(6), e)
    drawn = errors.draw(torch.Generator().manual_seed(0), 60000)
    share = torch.bincount(drawn, minlength=6).double() / 60000
    # Binomial deviation at p = 0.55 over 60,000 draws is 0.002: 0.008 is four of them.
    torch.testing.assert_close(share, (e / e.sum()).double(), rtol=0, atol=8e-3)
    assert share[0] == 0 and share[3] == 0
    f, pixels = 0.4, torch.tensor([0, 2, 5, 5])
    expected = (1 - f) + f * 6 * e.double()[pixels] / e.sum().double()
    torch.testing.assert_close(errors.relative_probability(pixels, f), expected, rtol=1e-12, atol=0)


def test_the_error_share_goes_to_the_pixels_that_were_wrong(tmp_path):
    """sample_by_error: a batch's pixels index the very pixels of its targets; once one pixel is known to be wrong and the
    rest unseen, the error share (half of 2000 rays) lands on it and the uniform half does not; before the precrop ends
    no ray is drawn by error; with error_alpha 1 the weights are 1/(P·p) scaled to a mean of 1."""
    scene = small_scene(tmp_path, size=12, n_train=3, n_val=1, n_test=1)
    sampler = BatchSampler(scene, torch.device("cpu"), 2000, 4, 2, precrop_iters=2, error_share=0.5, error_alpha=1.0)
    generator = torch.Generator().manual_seed(0)
    first = sampler(generator, 0)
    images = scene.images[scene.i_train]
    torch.testing.assert_close(images.reshape(-1, 3)[first.pixels], first.target, rtol=0, atol=0)
    assert first.weights is None  # the precrop's rays are drawn uniformly in the crop
    hard = 2 * 12 * 12 + 3 * 12 + 5  # slot 2, row 3, column 5
    sampler.record(dataclasses.replace(first, pixels=torch.tensor([hard])), torch.tensor([0.3]))
    cropped = sampler(generator, 1)
    # The crop's uniform draws only: 1 pixel in 3·6·6, 18.5 of 2000 on average (deviation 4.3).
    assert (cropped.pixels == hard).sum() < 40 and cropped.weights is None
    late = sampler(generator, 2)
    on_hard = late.pixels == hard
    # The unseen pixels' UNSEEN_ERROR is 432e-6 against 0.3: about 1.4 of the 1000 error draws fall elsewhere.
    assert on_hard[:1000].sum() >= 990 and on_hard[1000:].sum() < 20
    relative = sampler.errors.relative_probability(late.pixels, 0.5)
    torch.testing.assert_close(late.weights.double(), (1 / relative) / (1 / relative).mean(), rtol=1e-6, atol=0)
    assert late.weights[on_hard].max() < 0.01 < late.weights[~on_hard].min()


def test_weighted_rays_take_autograds_gradients_of_the_weighted_error():
    """With a batch's weights w the step's gradients, in sub-batches of 7, are autograd's of Σ w (rgb − target)² / (3 n)
    (float64), and the loss it reports is still the plain mean squared error."""
    state = make_state()
    state.model.double()
    weights = torch.rand(N_RAYS, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2
    batch = float64_batch(make_batch(), weights=weights)
    background = torch.ones(3, dtype=torch.float64)
    grad = lambda rays, t: RadianceField.evaluate(state.model.field.grad_networks(), rays, t)  # noqa: E731
    rgb = render_training(grad, state.model.sections, batch.rays, background, MODEL.samples_per_section, jitter=batch.jitter).rgb
    squared = ((rgb - batch.target) ** 2).sum(-1)
    params = [p for p in state.model.parameters() if p.requires_grad]
    expected = torch.autograd.grad(torch.sum(weights * squared) / (3 * N_RAYS), params)
    loss, ray_errors = TrainStep(state.model, background, precision="fp32", chunk=7)._backward(batch, None)
    for p, g in zip(params, expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss, squared.mean().detach().float() / 3, rtol=1e-6, atol=0)
    torch.testing.assert_close(ray_errors.double(), squared.detach(), rtol=1e-6, atol=0)  # rgb is taken in float32


def test_error_iters_hands_the_rays_back_to_uniform_draws(tmp_path):
    """error_iters K: the error share is 0 in the precrop, f right after it, and falls linearly to 0 over K steps; a batch
    draws that share of its rays by error (here all onto the one pixel known to be wrong) and weighs by it."""
    scene = small_scene(tmp_path, size=12, n_train=3, n_val=1, n_test=1)
    sampler = BatchSampler(scene, torch.device("cpu"), 1000, 4, 2, precrop_iters=10, error_share=0.6, error_alpha=1.0, error_iters=100)
    assert [sampler.share_at(step) for step in (0, 9, 10, 60, 110, 500)] == [0.0, 0.0, 0.6, pytest.approx(0.3), 0.0, 0.0]
    generator = torch.Generator().manual_seed(0)
    hard = 1 * 12 * 12 + 6 * 12 + 2
    sampler.record(dataclasses.replace(sampler(generator, 0), pixels=torch.tensor([hard])), torch.tensor([0.5]))
    for step, share in ((10, 0.6), (60, 0.3), (110, 0.0)):
        batch = sampler(generator, step)
        drawn = int(share * 1000)
        # Besides the error draws, about 1000·(1 − share)/432 uniform ones land on the pixel (under 3) and a few error draws
        # land elsewhere (UNSEEN_ERROR: 431e-6 against 0.5).
        assert drawn <= (batch.pixels == hard).sum() <= drawn + 10
        assert (batch.weights is None) == (share == 0)
