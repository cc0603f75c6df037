"""Scenes from disk: Blender and LLFF loaders behind one registry, and the generated demo scene."""
from typing import Callable, Dict

from .blender import load_blender
from .llff import load_llff
from .scene import Scene, SceneError

DATASETS: Dict[str, Callable[..., Scene]] = {"blender": load_blender, "llff": load_llff}


def load_scene(dataset_type: str, datadir, **options) -> Scene:
    """Loads ``datadir`` with the loader registered for ``dataset_type``.

    Args:
        dataset_type: a key of :data:`DATASETS`.
        options: keyword arguments of that loader (e.g. ``half_res`` for blender,
            ``factor`` for llff).
    """
    if dataset_type not in DATASETS:
        raise SceneError(f"unknown dataset_type {dataset_type!r}; expected one of {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset_type](datadir, **options)


__all__ = ["DATASETS", "Scene", "SceneError", "load_blender", "load_llff", "load_scene"]
