"""Image-quality metrics with the conventions users compare against.

* PSNR per image on [0, 1]: −10·log10(MSE), the prediction clipped to [0, 1].
* SSIM as tf.image.ssim: 11×11 Gaussian window with σ = 1.5, data range 1,
  population covariances, averaged over channels (scikit-image's
  ``structural_similarity`` with those settings).
* LPIPS with the VGG backbone, when the ``lpips`` package and its backbone
  weights are available offline; otherwise None and a note saying why.
"""
import math
from typing import Optional

import numpy as np
from skimage.metrics import structural_similarity


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of images [..., 3] in [0, 1] (inf for identical images)."""
    mse = float(np.mean((np.clip(prediction, 0.0, 1.0) - target) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """SSIM of [H, W, 3] images in [0, 1], tf.image.ssim's convention (images of at least 11x11 px)."""
    if min(target.shape[:2]) < 11:
        raise ValueError(f"SSIM's 11x11 window needs images of at least 11x11 px, got {target.shape[1]}x{target.shape[0]}")
    return float(
        structural_similarity(
            np.clip(prediction, 0.0, 1.0).astype(np.float64),
            target.astype(np.float64),
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            win_size=11,
            use_sample_covariance=False,
        )
    )


class LPIPS:
    """LPIPS-VGG if it can be built offline; ``note`` says why not otherwise."""

    def __init__(self, device):
        self.model = None
        self.note: Optional[str] = None
        try:
            import lpips  # optional: needs torchvision and the VGG weights in torch's cache
        except Exception as err:
            self.note = f"LPIPS not computed: the lpips package is not importable ({type(err).__name__}); pip install lpips, with its VGG weights cached, to get it"
            return
        try:
            self.model = lpips.LPIPS(net="vgg", verbose=False).to(device).eval()
        except Exception as err:
            self.note = f"LPIPS not computed: its VGG backbone could not be loaded offline ({type(err).__name__})"
        self.device = device

    def __call__(self, prediction: np.ndarray, target: np.ndarray) -> Optional[float]:
        if self.model is None:
            return None
        import torch

        def prep(x):
            return torch.from_numpy(np.clip(x, 0, 1)).permute(2, 0, 1)[None].float().to(self.device) * 2 - 1

        with torch.no_grad():
            return float(self.model(prep(prediction), prep(target)).item())
