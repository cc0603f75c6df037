"""Writing rendered images and videos: 8-bit PNG frames and MP4s."""
from pathlib import Path
from typing import List, Optional, Sequence

import imageio.v3 as iio
import numpy as np


def to8b(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8, rounded to nearest."""
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def grey_to_rgb(image: np.ndarray) -> np.ndarray:
    """[H, W] -> [H, W, 3] uint8, for video codecs that want colour frames."""
    return np.repeat(to8b(image)[..., None], 3, -1)


def write_video(path: Path, frames: List[np.ndarray], fps: int = 30) -> Path:
    """An MP4 of 8-bit frames (needs imageio-ffmpeg)."""
    try:
        iio.imwrite(path, np.stack(frames), fps=fps, codec="libx264", quality=8, macro_block_size=1)
    except (ImportError, RuntimeError, OSError) as err:
        raise RuntimeError(f"{path}: cannot write MP4 ({str(err).splitlines()[0]}); is imageio-ffmpeg installed?") from None
    return path


def write_videos(stem: Path, rgb: Sequence[np.ndarray], disparity: Sequence[np.ndarray]) -> List[Path]:
    """STEM_rgb.mp4 and STEM_disp.mp4 of float frames in [0, 1] (rgb [H, W, 3], disparity [H, W])."""
    return [
        write_video(stem.with_name(stem.name + "_rgb.mp4"), [to8b(x) for x in rgb]),
        write_video(stem.with_name(stem.name + "_disp.mp4"), [grey_to_rgb(x) for x in disparity]),
    ]


def write_frames(out_dir: Path, rgb: Sequence[np.ndarray], disparity: Sequence[np.ndarray], video: bool,
                 names: Optional[List[str]] = None) -> List[Path]:
    """rgb_XXX.png and disp_XXX.png per view; rgb.mp4 and disp.mp4 with ``video``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (colour, disp) in enumerate(zip(rgb, disparity)):
        name = names[i] if names else f"{i:03d}"
        for kind, image in (("rgb", colour), ("disp", disp)):
            path = out_dir / f"{kind}_{name}.png"
            iio.imwrite(path, to8b(image))
            written.append(path)
    if video:
        written.append(write_video(out_dir / "rgb.mp4", [to8b(x) for x in rgb]))
        written.append(write_video(out_dir / "disp.mp4", [grey_to_rgb(x) for x in disparity]))
    return written
