"""autoint-scene import: a COLMAP model of known cameras comes back as LLFF poses (by name), undistortion, the errors, and
structure from motion on fern's photos against the published poses."""
import json
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from autoint_cli.scene import SceneError, load_llff
from autoint_cli.scene.colmap import ImportSettings, import_scene, pose_agreement, umeyama

from helpers import SHARED_DATA

pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is an optional extra (pip install -e '.[colmap]')")

H, W, FOCAL = 30, 40, 35.0
FERN = SHARED_DATA / "nerf_llff_data" / "fern"


def known_cameras(n=6, seed=0):
    """OpenGL camera-to-world poses [n, 3, 4] on an arc, looking at the origin from about 4 units."""
    g = np.random.default_rng(seed)
    poses = []
    for i in range(n):
        angle = -0.6 + 1.2 * i / (n - 1)
        position = np.array([4 * np.sin(angle), 0.3 * g.normal(), 4 * np.cos(angle)])
        back = position / np.linalg.norm(position)
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)
        poses.append(np.stack((right, np.cross(back, right), back, position), 1))
    return np.stack(poses)


def write_model(folder, images, c2w, points, camera="PINHOLE", params=None, order=None):
    """A COLMAP text model of the OpenGL poses ``c2w`` (image i is images[i]) seeing ``points``, listed in ``order``."""
    folder.mkdir(parents=True, exist_ok=True)
    params = params or [FOCAL, FOCAL, W / 2, H / 2]
    (folder / "cameras.txt").write_text(f"1 {camera} {W} {H} {' '.join(map(str, params))}\n")
    lines, tracks = [], {j: [] for j in range(len(points))}
    for i in order if order is not None else range(len(images)):
        colmap_c2w = c2w[i][:, :3] * np.array([1.0, -1.0, -1.0])  # camera axes [right, down, forward]
        rotation = colmap_c2w.T
        translation = -rotation @ c2w[i][:, 3]
        qx, qy, qz, qw = Rotation.from_matrix(rotation).as_quat()
        lines.append(f"{i + 1} {qw} {qx} {qy} {qz} {' '.join(map(str, translation))} 1 {images[i]}")
        cam = points @ rotation.T + translation
        pixels = cam[:, :2] / cam[:, 2:] * FOCAL + np.array([W / 2, H / 2])
        observed = []
        for j, (u, v) in enumerate(pixels):
            tracks[j].append((i + 1, len(observed)))
            observed.append(f"{u} {v} {j + 1}")
        lines.append(" ".join(observed))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    rows = [f"{j + 1} {x} {y} {z} 128 128 128 0.5 " + " ".join(f"{a} {b}" for a, b in tracks[j]) for j, (x, y, z) in enumerate(points)]
    (folder / "points3D.txt").write_text("\n".join(rows) + "\n")


def photos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(1)
    for name in names:
        iio.imwrite(folder / name, (g.random((H, W, 3)) * 255).astype(np.uint8))


@pytest.fixture
def capture(tmp_path):
    names = [f"photo_{i:02d}.png" for i in range(6)]
    c2w = known_cameras()
    points = np.random.default_rng(2).uniform(-1, 1, (200, 3))
    photos(tmp_path / "photos", names)
    # Listed in another order than the names, with ids that do not follow them: matching must go by name.
    write_model(tmp_path / "model", names, c2w, points, order=[3, 0, 5, 1, 4, 2])
    return tmp_path, names, c2w, points


def test_a_known_model_comes_back_as_llff_poses_matched_by_name(capture):
    tmp_path, names, c2w, points = capture
    out = import_scene(tmp_path / "photos", tmp_path / "scene", ImportSettings(factors=(2,)), colmap_model=tmp_path / "model")
    array = np.load(out / "poses_bounds.npy")
    assert array.shape == (6, 17) and sorted(p.name for p in (out / "images").iterdir()) == names
    assert iio.imread(out / "images_2" / "photo_00.png").shape == (15, 20, 3)
    raw = array[:, :15].reshape(-1, 3, 5)
    expected = np.stack((-c2w[:, :, 1], c2w[:, :, 0], c2w[:, :, 2], c2w[:, :, 3]), -1)  # LLFF's [down, right, back, position]
    np.testing.assert_allclose(raw[:, :, :4], expected, atol=1e-5)
    np.testing.assert_allclose(raw[:, :, 4], np.array([[H, W, FOCAL]] * 6), atol=1e-9)
    depths = [(points - c[:, 3]) @ -c[:, 2] for c in c2w]  # along the viewing axis
    np.testing.assert_allclose(array[:, 15], [np.percentile(d, 0.1) for d in depths], rtol=1e-5)
    np.testing.assert_allclose(array[:, 16], [np.percentile(d, 99.9) for d in depths], rtol=1e-5)
    # The LLFF loader reads it unchanged: the poses scaled by 1/(0.75 · min near), not recentred.
    scene = load_llff(out, factor=1, llffhold=0, recenter=False, ndc=False)
    scale = 1 / (0.75 * array[:, 15].min())
    np.testing.assert_allclose(scene.c2w.numpy()[:, :, :3], c2w[:, :, :3], atol=1e-5)
    np.testing.assert_allclose(scene.c2w.numpy()[:, :, 3], scale * c2w[:, :, 3], atol=1e-4)
    assert scene.intrinsics.fx == pytest.approx(FOCAL)


def test_a_distorted_camera_is_undistorted_onto_a_pinhole(capture):
    tmp_path, names, c2w, points = capture
    write_model(tmp_path / "radial", names, c2w, points, camera="SIMPLE_RADIAL", params=[FOCAL, W / 2, H / 2, 0.05])
    out = import_scene(tmp_path / "photos", tmp_path / "scene", ImportSettings(), colmap_model=tmp_path / "radial")
    raw = np.load(out / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
    np.testing.assert_allclose(raw[:, :, 1], c2w[:, :, 0], atol=1e-5)  # poses unchanged
    height, width = iio.imread(out / "images" / names[0]).shape[:2]
    assert (raw[0, 0, 4], raw[0, 1, 4]) == (height, width)  # hwf describes the undistorted images
    assert not np.array_equal(iio.imread(out / "images" / names[0]), iio.imread(tmp_path / "photos" / names[0]))


@pytest.mark.parametrize("case, message", [
    ("unregistered", "1 of 7 photos did not register (photo_99.png); 6/7 = 86% did"),
    ("two_models", "expected one COLMAP model (cameras, images, points3D as .bin or .txt) or one numbered model folder, found 2"),
    ("unreadable", "photo_00.png: unreadable image (a photo to import)"),
    ("too_few", "2 photos (.png/.jpg); structure from motion needs at least 3"),
    ("not_empty", "already exists and is not an empty folder; choose a new --out"),
])
def test_import_errors_are_one_line(capture, case, message):
    tmp_path, names, c2w, points = capture
    model, out = tmp_path / "model", tmp_path / "scene"
    if case == "unregistered":
        photos(tmp_path / "photos", ["photo_99.png"])
    elif case == "two_models":
        for k in ("0", "1"):
            write_model(tmp_path / "sparse" / k, names, c2w, points)
        model = tmp_path / "sparse"
    elif case == "unreadable":
        (tmp_path / "photos" / "photo_00.png").write_bytes(b"not a png")
    elif case == "too_few":
        for name in names[2:]:
            (tmp_path / "photos" / name).unlink()
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    with pytest.raises(SceneError) as error:
        import_scene(tmp_path / "photos", out, ImportSettings(), colmap_model=model)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert case == "not_empty" or not out.exists()


def test_without_pycolmap_the_message_says_how_to_install(capture, monkeypatch):
    tmp_path, *_ = capture
    monkeypatch.setitem(sys.modules, "pycolmap", None)
    with pytest.raises(SceneError, match=r"pycolmap is not installed: pip install -e '\.\[colmap\]'"):
        import_scene(tmp_path / "photos", tmp_path / "scene", ImportSettings(), colmap_model=tmp_path / "model")


def test_the_command_line(capture, capsys):
    from autoint_cli.cli import scene_main

    tmp_path, *_ = capture
    assert scene_main(["import", "--images", str(tmp_path / "photos"), "--out", str(tmp_path / "scene"), "--colmap_model",
                       str(tmp_path / "model"), "--factor", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'scene'}: poses_bounds.npy, images/, images_2/")
    assert scene_main(["import", "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err.strip() == f"autoint-scene import: error: {tmp_path / 'nowhere'}: no such folder of photos"


def test_umeyama_recovers_a_similarity():
    g = np.random.default_rng(3)
    a = g.normal(size=(10, 3))
    rotation = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    scale, rot, shift = umeyama(a, 2.5 * a @ rotation.T + np.array([1.0, -2.0, 0.5]))
    assert scale == pytest.approx(2.5) and np.allclose(rot, rotation) and np.allclose(shift, [1.0, -2.0, 0.5])


@pytest.mark.skipif(not FERN.is_dir(), reason="fern is not in ../shared/data")
def test_structure_from_motion_on_ferns_photos_agrees_with_the_published_poses(tmp_path):
    """The 20 photos of images_8 alone: median rotation error under 2°, centre error under 5% of the camera extent after a
    similarity alignment, focal length within 5% (issue 17's evidence; about 20 s on two cores)."""
    out = import_scene(FERN / "images_8", tmp_path / "fern", ImportSettings())
    agreement = pose_agreement(np.load(out / "poses_bounds.npy"), np.load(FERN / "poses_bounds.npy"))
    (tmp_path / "agreement.json").write_text(json.dumps(agreement))
    assert agreement["n_images"] == 20
    assert agreement["median_rotation_deg"] < 2 and agreement["median_centre_error"] < 0.05
    assert abs(agreement["focal_ratio"] - 1) < 0.05
