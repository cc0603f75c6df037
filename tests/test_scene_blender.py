"""The Blender loader on the real lego scene and on small generated scenes."""
import json
import shutil

import numpy as np
import pytest
import torch

from autoint_cli.scene import SceneError, load_blender, load_scene
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene
from autoint_cli.volume.rays import camera_rays

from helpers import LEGO

needs_lego = pytest.mark.skipif(not LEGO.is_dir(), reason=f"{LEGO} not present")


@pytest.fixture(scope="module")
def lego():
    return load_blender(LEGO) if LEGO.is_dir() else None


@needs_lego
def test_lego_splits_and_camera(lego):
    assert (len(lego.i_train), len(lego.i_val), len(lego.i_test)) == (100, 50, 200)
    assert lego.images.shape == (350, 400, 400, 3) and lego.images.dtype == torch.float32
    assert (lego.H, lego.W) == (400, 400)
    assert lego.focal == pytest.approx(555.5555, abs=1e-3)
    assert (lego.intrinsics.cx, lego.intrinsics.cy) == (200.0, 200.0)
    assert (lego.near, lego.far) == (2.0, 6.0)
    assert lego.render_c2w.shape == (40, 3, 4)
    assert 0.0 <= lego.images.min() and lego.images.max() <= 1.0


@needs_lego
def test_lego_white_background(lego):
    # The corners of every nerf_synthetic render are empty: fully transparent, so white.
    torch.testing.assert_close(lego.images[:, 0, 0], torch.ones(350, 3), rtol=0, atol=0)
    black = load_blender(LEGO, white_bkgd=False, testskip=50)
    assert black.images[:, 0, 0].max() == 0.0
    # Object pixels are the same either way where alpha is 1.
    white = load_blender(LEGO, white_bkgd=True, testskip=50)
    opaque = (black.images - white.images).abs().amax(-1) == 0
    assert opaque.float().mean() > 0.05


@needs_lego
def test_lego_testskip():
    scene = load_blender(LEGO, testskip=8)
    assert (len(scene.i_train), len(scene.i_val), len(scene.i_test)) == (100, 7, 25)


@needs_lego
def test_lego_centre_rays_point_down_minus_z(lego):
    for view in range(0, 350, 7):
        c2w = lego.c2w[view]
        rays = camera_rays(c2w, lego.intrinsics, lego.near, lego.far)
        centre = rays.directions[200, 200]
        torch.testing.assert_close(centre / centre.norm(), -c2w[:, 2], rtol=0, atol=1e-6)


@needs_lego
def test_lego_half_res_area_filter():
    half = load_blender(LEGO, half_res=True, testskip=50)
    full = load_blender(LEGO, testskip=50)
    assert (half.H, half.W) == (200, 200)
    assert half.focal == pytest.approx(full.focal / 2)
    # An area filter on white-composited data equals the 2x2 mean wherever alpha is constant;
    # compare the overall brightness, which the box filter preserves.
    torch.testing.assert_close(half.images.mean(), full.images.mean(), rtol=0, atol=2e-3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "tiny"
    return write_demo_scene(folder, DemoSceneSpec(size=12, n_train=3, n_val=2, n_test=2))


def copy_scene(tiny, tmp_path):
    folder = tmp_path / "scene"
    shutil.copytree(tiny, folder)
    return folder


def test_generated_scene_round_trips(tiny):
    scene = load_scene("blender", tiny)
    assert scene.name == "tiny"
    assert (len(scene.i_train), len(scene.i_val), len(scene.i_test)) == (3, 2, 2)
    assert scene.images.shape == (7, 12, 12, 3)
    assert scene.focal == pytest.approx(6 / np.tan(0.5 * 0.6911112070083618))


def test_the_scene_keeps_alpha_for_random_backgrounds(tiny, tmp_path):
    """The files' alpha is kept beside the composited images (halved with them); all-opaque images keep none."""
    import imageio.v3 as iio

    scene = load_blender(tiny)
    first = iio.imread(tiny / "train" / "r_0.png").astype(np.float32) / 255
    assert scene.alpha.shape == (7, 12, 12, 1)
    torch.testing.assert_close(scene.alpha[0], torch.from_numpy(first[..., 3:]), rtol=0, atol=0)
    assert (scene.alpha == 0).any() and (scene.alpha == 1).any()
    assert load_blender(tiny, half_res=True).alpha.shape == (7, 6, 6, 1)
    folder = copy_scene(tiny, tmp_path)
    for png in folder.glob("*/r_*.png"):
        iio.imwrite(png, iio.imread(png)[..., :3])
    assert load_blender(folder).alpha is None


def test_explicit_focal_and_principal_point(tiny, tmp_path):
    folder = copy_scene(tiny, tmp_path)
    for split in ("train", "val", "test"):
        path = folder / f"transforms_{split}.json"
        meta = json.loads(path.read_text())
        del meta["camera_angle_x"]
        meta.update(fl_x=20.0, fl_y=22.0, cx=5.5)
        meta["frames"][0]["cy"] = 6.5  # per frame, equal everywhere
        for frame in meta["frames"][1:]:
            frame["cy"] = 6.5
        path.write_text(json.dumps(meta))
    scene = load_blender(folder)
    k = scene.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == (20.0, 22.0, 5.5, 6.5)


def test_file_path_with_extension(tiny, tmp_path):
    folder = copy_scene(tiny, tmp_path)
    path = folder / "transforms_val.json"
    meta = json.loads(path.read_text())
    for frame in meta["frames"]:
        frame["file_path"] += ".png"
    path.write_text(json.dumps(meta))
    assert len(load_blender(folder).i_val) == 2


def test_differing_cameras_are_refused(tiny, tmp_path):
    folder = copy_scene(tiny, tmp_path)
    path = folder / "transforms_test.json"
    meta = json.loads(path.read_text())
    meta["camera_angle_x"] = 1.0
    path.write_text(json.dumps(meta))
    with pytest.raises(SceneError, match="one camera per scene is supported"):
        load_blender(folder)
