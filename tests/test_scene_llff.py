"""The LLFF loader on the real fern capture and on small generated captures."""
import logging

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from autoint_cli.scene import SceneError, load_llff
from autoint_cli.scene.poses import look_along
from autoint_cli.volume.rays import camera_rays

from helpers import FERN, folder_state

needs_fern = pytest.mark.skipif(not FERN.is_dir(), reason=f"{FERN} not present")


@needs_fern
def test_fern_splits_and_camera():
    scene = load_llff(FERN)
    assert scene.images.shape == (20, 378, 504, 3)
    assert (scene.W, scene.H) == (504, 378)
    assert scene.i_test.tolist() == [0, 8, 16] and scene.i_val.tolist() == [0, 8, 16]
    assert len(scene.i_train) == 17 and not set(scene.i_train.tolist()) & {0, 8, 16}
    assert scene.ndc and (scene.near, scene.far) == (0.0, 1.0)
    assert scene.render_c2w.shape == (120, 3, 4)
    # Factor 8 of the 4032x3024 capture: the stored focal divided by 8.
    raw = np.load(FERN / "poses_bounds.npy")
    assert scene.focal == pytest.approx(raw[0, 14] / 8, rel=1e-6)


@needs_fern
def test_fern_ndc_rays_start_on_the_near_plane():
    scene = load_llff(FERN)
    for view in (0, 5, 16):
        rays = camera_rays(scene.c2w[view].double(), scene.intrinsics, scene.near, scene.far, ndc=True)
        torch.testing.assert_close(rays.origins[..., 2], -torch.ones(378, 504, dtype=torch.float64), rtol=0, atol=1e-9)
        assert (rays.near == 0).all() and (rays.far == 1).all()
        # t = 1 is at infinity: z' = 1.
        torch.testing.assert_close((rays.origins + rays.directions)[..., 2], torch.ones(378, 504, dtype=torch.float64), rtol=0, atol=1e-9)


@needs_fern
def test_fern_without_ndc_and_other_factor():
    scene = load_llff(FERN, ndc=False)
    assert not scene.ndc and 0 < scene.near < scene.far
    with pytest.raises(SceneError, match=r"no images_4/ folder and no images/ to make it from"):
        load_llff(FERN, factor=4)


def make_capture(folder, n=5, H=16, W=24, seed=0, write_images=True):
    """A forward-facing capture in LLFF's format: poses_bounds.npy (3x5 [down, right, back, t, hwf] + bounds)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    c2w = np.stack([look_along([0, 0, 1.0] + rng.normal(scale=0.05, size=3), [0, 1, 0], rng.normal(scale=0.3, size=3)) for _ in range(n)])
    raw = np.concatenate((-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:4]), axis=2)  # OpenGL -> LLFF columns
    hwf = np.broadcast_to(np.array([H, W, 20.0])[None, :, None], (n, 3, 1))
    bounds = np.stack([rng.uniform(2, 3, n), rng.uniform(8, 10, n)], -1)
    np.save(folder / "poses_bounds.npy", np.concatenate((np.concatenate((raw, hwf), 2).reshape(n, 15), bounds), 1))
    if write_images:
        (folder / "images").mkdir()
        for i in range(n):
            iio.imwrite(folder / "images" / f"IMG_{i:03d}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    return c2w, bounds


def test_pose_conventions_and_scaling(tmp_path):
    c2w, bounds = make_capture(tmp_path / "cap")
    scene = load_llff(tmp_path / "cap", factor=1, recenter=False, ndc=False, llffhold=0)
    scale = 1 / (bounds.min() * 0.75)
    expected = c2w.copy()
    expected[:, :, 3] *= scale
    torch.testing.assert_close(scene.c2w, torch.from_numpy(expected).float(), rtol=0, atol=1e-6)
    assert scene.near == pytest.approx(bounds.min() * scale * 0.9) and scene.far == pytest.approx(bounds.max() * scale)
    assert len(scene.i_test) == 0 and len(scene.i_train) == 5


def test_recentred_average_pose_is_identity(tmp_path):
    make_capture(tmp_path / "cap")
    scene = load_llff(tmp_path / "cap", factor=1, llffhold=2)
    positions = scene.c2w[:, :, 3].double()
    torch.testing.assert_close(positions.mean(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6)
    assert scene.i_test.tolist() == [0, 2, 4] and scene.i_train.tolist() == [1, 3]


def test_missing_factor_is_made_from_full_images_once(tmp_path, caplog):
    make_capture(tmp_path / "cap", H=16, W=24)
    with caplog.at_level(logging.WARNING):
        scene = load_llff(tmp_path / "cap", factor=2)
    assert "images_2/ missing; making it from images/" in caplog.text
    assert (scene.H, scene.W) == (8, 12)
    assert scene.focal == pytest.approx(10.0)
    originals = np.stack([iio.imread(p) for p in sorted((tmp_path / "cap" / "images").iterdir())]) / 255.0
    box = originals.reshape(5, 8, 2, 12, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(scene.images.numpy(), box, rtol=0, atol=0.5 / 255 + 1e-6)
    cached = folder_state(tmp_path / "cap" / "images_2")
    caplog.clear()
    load_llff(tmp_path / "cap", factor=2)
    assert "making it" not in caplog.text
    assert folder_state(tmp_path / "cap" / "images_2") == cached
    assert not list((tmp_path / "cap").glob(".images_*"))


def test_spherify_option(tmp_path):
    make_capture(tmp_path / "cap")
    scene = load_llff(tmp_path / "cap", factor=1, spherify=True, ndc=False)
    radius = scene.c2w[:, :, 3].double().norm(dim=-1)
    assert radius.pow(2).mean().sqrt().item() == pytest.approx(1.0, abs=1e-6)
    assert scene.render_c2w.shape == (120, 3, 4)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("shape", r"expected an array of shape \[n_images, 17\] \(3x5 pose \+ 2 bounds\), got \[5, 15\]"),
        ("nan", r"NaN or inf in poses or bounds \(rows 2\)"),
        ("count", r"4 images, but poses_bounds.npy has 5 poses"),
        ("no_images", r"no images_8/ folder and no images/ to make it from"),
        ("no_poses", r"poses_bounds.npy missing"),
        ("holdout", r"llffhold 1 leaves no training images"),
    ],
)
def test_bad_captures(tmp_path, damage, message):
    folder = tmp_path / "cap"
    make_capture(folder, write_images=damage != "no_images")
    array = np.load(folder / "poses_bounds.npy")
    factor, llffhold = 1, 8
    if damage == "shape":
        np.save(folder / "poses_bounds.npy", array[:, :15])
    elif damage == "nan":
        array[2, 3] = np.nan
        np.save(folder / "poses_bounds.npy", array)
    elif damage == "count":
        sorted((folder / "images").iterdir())[-1].unlink()
    elif damage == "no_images":
        factor = 8
    elif damage == "no_poses":
        (folder / "poses_bounds.npy").unlink()
    elif damage == "holdout":
        llffhold = 1
    before = folder_state(folder)
    with pytest.raises(SceneError, match=message):
        load_llff(folder, factor=factor, llffhold=llffhold)
    assert folder_state(folder) == before


def test_val_view_holds_one_training_image_out(tmp_path):
    make_capture(tmp_path / "cap", n=10)
    scene = load_llff(tmp_path / "cap", factor=1, llffhold=4, val_view=3)
    assert scene.i_val.tolist() == [3] and scene.i_test.tolist() == [0, 4, 8]
    assert scene.i_train.tolist() == [1, 2, 5, 6, 7, 9]
    plain = load_llff(tmp_path / "cap", factor=1, llffhold=4)
    assert plain.i_val.tolist() == plain.i_test.tolist() == [0, 4, 8]
    with pytest.raises(SceneError, match="val_view 8 is not a training image"):
        load_llff(tmp_path / "cap", factor=1, llffhold=4, val_view=8)
    assert scene.bound == 1.0 and plain.bound == 1.0  # NDC


def test_val_view_holds_several_training_images_out(tmp_path):
    """Several val views (a steadier val score for choosing settings); each must be a training image, and named once."""
    make_capture(tmp_path / "cap", n=10)
    scene = load_llff(tmp_path / "cap", factor=1, llffhold=4, val_view=(6, 2))
    assert scene.i_val.tolist() == [6, 2] and scene.i_test.tolist() == [0, 4, 8]
    assert scene.i_train.tolist() == [1, 3, 5, 7, 9]
    assert load_llff(tmp_path / "cap", factor=1, llffhold=4, val_view=(-1,)).i_val.tolist() == [0, 4, 8]
    for views, message in (((2, 4), "val_view 4 is not a training image"), ((2, 2), "val_view names an image twice"),
                           ((1, 2, 3, 5, 6, 7, 9), "leaves no training images besides val_view 1 2 3")):
        with pytest.raises(SceneError, match=message):
            load_llff(tmp_path / "cap", factor=1, llffhold=4, val_view=views)
