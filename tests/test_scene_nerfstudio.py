"""The nerfstudio loader: the same rays as the Blender loader on the same scene (up to nerfstudio's normalisation), splits,
OPENCV undistortion, and one-line errors."""
import json
import math

import cv2
import numpy as np
import pytest
import torch

from autoint_cli.scene import SceneError, load_blender, load_nerfstudio
from autoint_cli.scene.images import read_image, with_alpha
from autoint_cli.scene.nerfstudio import NEAR, apply_transform, normalizing_transform, undistort
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene
from autoint_cli.volume.rays import Intrinsics, camera_rays


def as_nerfstudio(blender_dir, lists=True, **extra):
    """A transforms.json in nerfstudio's layout beside a Blender scene's files, frames in split order."""
    frames, names = [], {}
    for split in ("train", "val", "test"):
        meta = json.loads((blender_dir / f"transforms_{split}.json").read_text())
        for frame in meta["frames"]:
            frames.append({"file_path": frame["file_path"] + ".png", "transform_matrix": frame["transform_matrix"]})
            names.setdefault(split, []).append(frames[-1]["file_path"])
    angle = meta["camera_angle_x"]
    size = 12
    focal = 0.5 * size / math.tan(0.5 * angle)
    data = {"camera_model": "PINHOLE", "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size,
            "applied_transform": np.eye(4)[:3].tolist(), "frames": frames}
    if lists:
        data.update({f"{split}_filenames": names[split] for split in names})
    data.update(extra)
    (blender_dir / "transforms.json").write_text(json.dumps(data))
    return data


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    folder = write_demo_scene(tmp_path_factory.mktemp("ns") / "scene", DemoSceneSpec(size=12, n_train=5, n_val=2, n_test=3))
    as_nerfstudio(folder)
    return folder


def test_the_same_rays_as_the_blender_loader_after_the_normalisation(scene_dir):
    blender, ns = load_blender(scene_dir), load_nerfstudio(scene_dir, white_bkgd=True)
    assert [len(s) for s in (ns.i_train, ns.i_val, ns.i_test)] == [5, 2, 3]
    torch.testing.assert_close(ns.images, blender.images, rtol=0, atol=1e-6)
    torch.testing.assert_close(ns.alpha, blender.alpha, rtol=0, atol=0)
    assert ns.intrinsics == blender.intrinsics
    transform, scale = normalizing_transform(blender.c2w.double().numpy())
    rotation, shift = torch.from_numpy(transform[:, :3]).float(), torch.from_numpy(transform[:, 3]).float()
    for i in range(len(blender.c2w)):
        ours = camera_rays(ns.c2w[i], ns.intrinsics, ns.near, ns.far)
        theirs = camera_rays(blender.c2w[i], blender.intrinsics, blender.near, blender.far)
        torch.testing.assert_close(ours.origins, scale * (theirs.origins @ rotation.T + shift), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.directions, theirs.directions @ rotation.T, rtol=0, atol=1e-5)
    # The normalised frame: mean up along +z, cameras centred, the largest camera coordinate 1, far reaching the box.
    positions = ns.c2w[:, :, 3].double()
    up = ns.c2w[:, :, 1].double().mean(0)
    torch.testing.assert_close(up / up.norm(), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(positions.mean(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6)
    assert positions.abs().max().item() == pytest.approx(1.0, abs=1e-6)
    assert ns.near == NEAR and 2 < ns.far <= 2 * math.sqrt(3) + 1e-6 and ns.bound == 1.0


def test_without_split_lists_every_kth_frame_is_held_out(tmp_path):
    folder = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=5, n_val=2, n_test=3))
    as_nerfstudio(folder, lists=False)
    scene = load_nerfstudio(folder, holdout=4)
    assert scene.i_test.tolist() == scene.i_val.tolist() == [0, 4, 8]
    assert scene.i_train.tolist() == [1, 2, 3, 5, 6, 7, 9]


def test_apply_transform_is_a_similarity():
    g = np.random.default_rng(0)
    rotations = np.linalg.qr(g.normal(size=(4, 3, 3)))[0]
    rotations *= np.sign(np.linalg.det(rotations))[:, None, None]  # proper rotations: determinant +1
    c2w = np.concatenate((rotations, g.normal(size=(4, 3, 1))), -1)
    transform, scale = normalizing_transform(c2w)
    moved = apply_transform(c2w, transform, scale)
    np.testing.assert_allclose(np.linalg.det(moved[:, :, :3]), 1.0, atol=1e-12)
    distances = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distances(moved[:, :, 3]), scale * distances(c2w[:, :, 3]), atol=1e-12)


def test_opencv_undistortion_undoes_the_distortion():
    """A smooth image seen through k1, k2, p1, p2 (made with OpenCV's own model), undistorted back: equal inside the frame."""
    H, W = 60, 80
    camera = Intrinsics(H, W, 70.0, 72.0, 41.0, 29.5)
    K = np.array([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1]])
    coefficients = np.array([-0.25, 0.05, 0.004, -0.003])
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    image = np.stack((np.sin(u / 9), np.cos(v / 7), np.sin((u + v) / 13)), -1).astype(np.float32) * 0.5 + 0.5
    # Each distorted pixel shows the pinhole image where its undistorted ray lands.
    ideal = cv2.undistortPoints(np.stack((u, v), -1).reshape(-1, 1, 2), K, coefficients, P=K).reshape(H, W, 2)
    distorted = cv2.remap(image, ideal[..., 0], ideal[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    restored = undistort(distorted, camera, coefficients)
    inner = (slice(8, H - 8), slice(8, W - 8))
    np.testing.assert_allclose(restored[inner], image[inner], atol=0.02)
    assert np.abs(distorted[inner] - image[inner]).max() > 0.1  # the distortion is not negligible


def test_the_loader_undistorts_opencv_frames(tmp_path):
    folder = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=3, n_val=1, n_test=1))
    as_nerfstudio(folder, camera_model="OPENCV", k1=-0.25, k2=0.05, p1=0.004, p2=-0.003)
    blender, ns = load_blender(folder), load_nerfstudio(folder, white_bkgd=True)
    # RGBA is undistorted first, then composited (so that edges keep their coverage).
    rgba = with_alpha(read_image(folder / json.loads((folder / "transforms.json").read_text())["frames"][2]["file_path"]))
    straight = undistort(rgba, blender.intrinsics, np.array([-0.25, 0.05, 0.004, -0.003]))
    expected = straight[..., :3] * straight[..., 3:] + 1 - straight[..., 3:]
    np.testing.assert_allclose(ns.images[2].numpy(), expected, atol=1e-5)
    assert np.abs(ns.images[2].numpy() - blender.images[2].numpy()).max() > 0.05


@pytest.mark.parametrize("change, message", [
    ({"camera_model": "OPENCV_FISHEYE"}, "camera_model 'OPENCV_FISHEYE'; expected one of PINHOLE, OPENCV"),
    ({"test_filenames": ["nowhere.png"]}, "test_filenames names 'nowhere.png', which no frame has as file_path"),
    ({"w": 13}, "image is 12x12, but the file says 13x12"),
])
def test_bad_nerfstudio_scenes(tmp_path, change, message):
    folder = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=3, n_val=1, n_test=1))
    as_nerfstudio(folder, **change)
    with pytest.raises(SceneError) as error:
        load_nerfstudio(folder)
    assert str(error.value).startswith(str(folder / "transforms.json")) and message in str(error.value)


def test_frames_with_different_cameras_are_refused(tmp_path):
    folder = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=3, n_val=1, n_test=1))
    data = as_nerfstudio(folder)
    data["frames"][2]["fl_x"] = 99.0
    (folder / "transforms.json").write_text(json.dumps(data))
    with pytest.raises(SceneError, match="frame 2 has camera .* one camera per scene is supported"):
        load_nerfstudio(folder)
