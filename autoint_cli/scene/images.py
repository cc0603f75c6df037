"""Reading and resizing images, with errors that name the file."""
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import imageio.v3 as iio
import numpy as np

from .scene import SceneError


def read_image(path: Path, context: str = "") -> np.ndarray:
    """An image as float32 [H, W, C] in [0, 1] (C = 3 or 4).

    Args:
        path: the file.
        context: appended to an error, e.g. "frame 3 of transforms_train.json".
    """
    where = f" ({context})" if context else ""
    if not path.is_file():
        raise SceneError(f"{path}: image missing{where}")
    try:
        image = iio.imread(path)
    except Exception as err:  # imageio raises many types for undecodable files
        raise SceneError(f"{path}: unreadable image{where}: {type(err).__name__}") from None
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise SceneError(f"{path}: expected an RGB or RGBA image{where}, got shape {image.shape}")
    scale = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    return image.astype(np.float32) / scale


def with_alpha(image: np.ndarray) -> np.ndarray:
    """[H, W, 3 or 4] -> [H, W, 4]: an RGB image gets an opaque alpha channel."""
    if image.shape[-1] == 4:
        return image
    return np.concatenate((image, np.ones_like(image[..., :1])), -1)


def read_split(paths: Sequence[Path], contexts: Sequence[str], rgba: bool = False) -> np.ndarray:
    """Images of one split, all of one size: float32 [n, H, W, C] (C = 4 with ``rgba``, RGB images made opaque)."""
    images: List[np.ndarray] = []
    for path, context in zip(paths, contexts):
        image = read_image(path, context)
        if rgba:
            image = with_alpha(image)
        if images and image.shape != images[0].shape:
            first = images[0].shape
            raise SceneError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} with {image.shape[2]} channels, "
                f"but {paths[0].name} in the same split is {first[1]}x{first[0]} with {first[2]}"
            )
        images.append(image)
    return np.stack(images)


def resize_area(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Area-filter resize (box average when shrinking) to size = (H, W)."""
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def write_downsized(source: Path, target: Path, factor: int) -> Path:
    """``source`` shrunk ``factor`` times with an area filter, as an 8-bit PNG at ``target``: LLFF's images_<K>/ files."""
    image = read_image(source)
    size = (int(round(image.shape[0] / factor)), int(round(image.shape[1] / factor)))
    iio.imwrite(target, np.clip(np.round(resize_area(image, size) * 255), 0, 255).astype(np.uint8))
    return target


def composite(rgba: np.ndarray, background) -> np.ndarray:
    """RGB over ``background`` [3]: rgb·α + (1 − α)·background for [..., 4]; [..., 3] is returned as it is (opaque)."""
    if rgba.shape[-1] != 4:
        return rgba
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha) * np.asarray(background, dtype=np.float32)
