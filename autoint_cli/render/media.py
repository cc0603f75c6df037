"""Writing rendered images and videos: 8-bit PNG frames and MP4s, never left half-written."""
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import imageio.v3 as iio
import numpy as np
import torch

from ..utils.atomic import atomic_write, staged_files


def to8b(image) -> np.ndarray:
    """[0, 1] floats to uint8, rounded to nearest. A tensor is converted on its device (so that a GPU frame crosses to the
    host as bytes, not floats) and returned as an array."""
    if isinstance(image, torch.Tensor):
        return (image.float().clamp(0.0, 1.0) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def grey_to_rgb(image: np.ndarray) -> np.ndarray:
    """[H, W] -> [H, W, 3] uint8, for video codecs that want colour frames."""
    return np.repeat(to8b(image)[..., None], 3, -1)


def video_writer_missing() -> str:
    """Why MP4s cannot be written here ("" when they can): imageio writes them through imageio-ffmpeg.

    Without it imageio falls back to another plugin, which fails late and obscurely (TIFF's writer has no fps).
    """
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return "imageio-ffmpeg is not installed (pip install imageio-ffmpeg)"
    return ""


def write_video(path: Path, frames: List[np.ndarray], fps: float = 30) -> Path:
    """An MP4 of 8-bit frames (needs imageio-ffmpeg), written atomically."""
    missing = video_writer_missing()
    if missing:
        raise RuntimeError(f"{path}: cannot write MP4: {missing}")
    stack = np.stack(frames)
    try:
        # The temporary's name ends in .tmp: the plugin and ffmpeg's muxer are named rather than guessed from it.
        return atomic_write(path, lambda temp: iio.imwrite(temp, stack, extension=".mp4", fps=fps, codec="libx264", quality=8,
                                                          macro_block_size=1, output_params=["-f", "mp4"]))
    except (ImportError, RuntimeError, OSError) as err:
        raise RuntimeError(f"{path}: cannot write MP4 ({str(err).splitlines()[0]})") from None


def write_videos(stem: Path, rgb: Sequence[np.ndarray], disparity: Sequence[np.ndarray]) -> List[Path]:
    """STEM_rgb.mp4 and STEM_disp.mp4 of float frames in [0, 1] (rgb [H, W, 3], disparity [H, W])."""
    return [
        write_video(stem.with_name(stem.name + "_rgb.mp4"), [to8b(x) for x in rgb]),
        write_video(stem.with_name(stem.name + "_disp.mp4"), [grey_to_rgb(x) for x in disparity]),
    ]


@dataclass(frozen=True)
class DepthMaps:
    """Expected depth and accumulated opacity of each view (float32 [H, W]), and what they mean (the sidecar JSON)."""

    depth: Sequence[np.ndarray]
    acc: Sequence[np.ndarray]
    meaning: Dict


def turbo_depth(depth: Sequence[np.ndarray], acc: Sequence[np.ndarray], hit: float = 0.5) -> List[np.ndarray]:
    """Depth given a hit (depth / acc) in the turbo colour map, near blue to far red, in one range for all frames (the 1st to
    99th percentile of every hit pixel) so that a video does not flicker; black where acc < ``hit``. [H, W, 3] uint8 each."""
    given = [np.where(a > hit, d / np.maximum(a, 1e-10), np.nan) for d, a in zip(depth, acc)]
    values = np.concatenate([g[np.isfinite(g)] for g in given]) if given else np.zeros(0)
    low, high = (np.percentile(values, [1, 99]) if values.size else (0.0, 1.0))
    frames = []
    for g in given:
        scaled = np.clip((np.nan_to_num(g, nan=low) - low) / max(high - low, 1e-10), 0, 1)
        colour = cv2.applyColorMap(to8b(scaled), cv2.COLORMAP_TURBO)[..., ::-1]  # OpenCV gives BGR
        frames.append(np.where(np.isfinite(g)[..., None], colour, 0).astype(np.uint8))
    return frames


def write_frames(out_dir: Path, rgb: Sequence[np.ndarray], disparity: Sequence[np.ndarray], video: bool,
                 names: Optional[List[str]] = None, depth: Optional[DepthMaps] = None, fps: float = 30) -> List[Path]:
    """rgb_XXX.png and disp_XXX.png per view; rgb.mp4 and disp.mp4 (``fps``) with ``video``; with ``depth`` also depth_XXX.npy,
    acc_XXX.npy, the turbo-coloured depth_XXX.png, depth.json (what they hold) and depth.mp4.

    All are written into a staging folder first and moved into ``out_dir``
    together at the end: an interrupted write leaves none of them behind.
    """
    staged = []
    coloured = turbo_depth(depth.depth, depth.acc) if depth is not None else []
    with staged_files(out_dir) as staging:
        for i, (colour, disp) in enumerate(zip(rgb, disparity)):
            name = names[i] if names else f"{i:03d}"
            images = [("rgb", to8b(colour)), ("disp", to8b(disp))] + ([("depth", coloured[i])] if depth is not None else [])
            for kind, image in images:
                iio.imwrite(staging / f"{kind}_{name}.png", image)
                staged.append(f"{kind}_{name}.png")
            if depth is not None:
                for kind, array in (("depth", depth.depth[i]), ("acc", depth.acc[i])):
                    np.save(staging / f"{kind}_{name}.npy", np.asarray(array, dtype=np.float32))
                    staged.append(f"{kind}_{name}.npy")
        if depth is not None:
            (staging / "depth.json").write_text(json.dumps(depth.meaning, indent=1) + "\n")
            staged.append("depth.json")
        if video:
            staged.append(write_video(staging / "rgb.mp4", [to8b(x) for x in rgb], fps).name)
            staged.append(write_video(staging / "disp.mp4", [grey_to_rgb(x) for x in disparity], fps).name)
            if depth is not None:
                staged.append(write_video(staging / "depth.mp4", coloured, fps).name)
    return [out_dir / name for name in staged]
