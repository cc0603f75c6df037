"""The Scene dataclass every loader returns, and the error a loader raises for bad data."""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..volume.rays import Intrinsics


class SceneError(ValueError):
    """Bad scene data; the message is one line naming the file or folder and what was expected."""


@dataclass(frozen=True)
class Scene:
    """A multi-view scene, ready for ray generation.

    Camera convention: ``c2w`` maps camera to world coordinates with OpenGL
    axes (the camera looks down −z, +y up), as in Blender and NeRF.

    Attributes:
        name: the scene's folder name.
        images: float32 [n, H, W, 3] in [0, 1], composited on ``background``.
        c2w: float32 [n, 3, 4], one pose per image.
        intrinsics: the pinhole camera shared by all images.
        near, far: ray bounds in t (0 and 1 for NDC scenes).
        i_train, i_val, i_test: int64 indices into ``images``.
        render_c2w: float32 [k, 3, 4], the camera path for videos.
        ndc: whether rays are mapped to normalised device coordinates.
        background: the RGB colour behind the scene (white or black for Blender).
        bound: half the side of an origin-centred cube holding the content that rays cross (in NDC: 1), for
            models that store features on a grid.
        alpha: float32 [n, H, W, 1] the images' opacity before compositing, or None where every pixel is opaque (photos).
            Training with a random background per ray (``random_bkgd``) composites the pixels again with it.
    """

    name: str
    images: Tensor
    c2w: Tensor
    intrinsics: Intrinsics
    near: float
    far: float
    i_train: Tensor
    i_val: Tensor
    i_test: Tensor
    render_c2w: Tensor
    ndc: bool = False
    background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    bound: float = 1.0
    alpha: Optional[Tensor] = None

    def __post_init__(self):
        n = self.images.shape[0]
        assert self.images.shape == (n, self.H, self.W, 3), self.images.shape
        assert self.alpha is None or self.alpha.shape == (n, self.H, self.W, 1), self.alpha.shape
        assert self.c2w.shape == (n, 3, 4), self.c2w.shape
        assert self.render_c2w.shape[1:] == (3, 4), self.render_c2w.shape
        assert self.near < self.far, (self.near, self.far)

    @property
    def H(self) -> int:
        return self.intrinsics.H

    @property
    def W(self) -> int:
        return self.intrinsics.W

    @property
    def focal(self) -> float:
        return self.intrinsics.fx

    def split(self, name: str) -> Tensor:
        """Indices of ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, val or test")
        return getattr(self, "i_" + name)

    def summary(self) -> str:
        """A few lines a person reads to check that the data loaded as expected."""
        k = self.intrinsics
        return "\n".join(
            [
                f"scene {self.name}: {self.images.shape[0]} images of {self.W}x{self.H} px "
                f"(train {len(self.i_train)}, val {len(self.i_val)}, test {len(self.i_test)})",
                f"focal {k.fx:.3f} x {k.fy:.3f} px, principal point ({k.cx:.1f}, {k.cy:.1f})",
                f"near {self.near:g}, far {self.far:g}, ndc {self.ndc}, background {self.background}, bound {self.bound:g}",
                f"render path: {self.render_c2w.shape[0]} cameras",
            ]
        )


def as_tensor(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def alpha_of(rgba: np.ndarray) -> Optional[Tensor]:
    """The alpha channel of [n, H, W, 4] images as float32 [n, H, W, 1], or None when there is none or every pixel is opaque."""
    if rgba.shape[-1] != 4 or bool((rgba[..., 3] >= 1.0).all()):
        return None
    return as_tensor(rgba[..., 3:])


def as_indices(indices) -> Tensor:
    return torch.as_tensor(np.asarray(indices, dtype=np.int64))
