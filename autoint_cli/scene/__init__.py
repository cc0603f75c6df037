"""Scenes from disk: Blender and LLFF loaders behind one registry, and the generated demo scene."""
import dataclasses
from typing import Any, Callable, Dict

from ..config import DataConfig
from .blender import load_blender
from .llff import load_llff
from .nerfstudio import load_nerfstudio
from .scene import Scene, SceneError
from .synthetic import ensure_demo_scene

DATASETS: Dict[str, Callable[..., Scene]] = {"blender": load_blender, "llff": load_llff, "nerfstudio": load_nerfstudio}


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


def loader_options(config: DataConfig) -> Dict[str, Any]:
    """The keyword arguments of ``config.dataset_type``'s loader, from the config's keys."""
    if config.dataset_type == "blender":
        return {"half_res": config.half_res, "white_bkgd": config.white_bkgd, "testskip": config.testskip}
    if config.dataset_type == "llff":
        return {"factor": config.factor, "llffhold": config.llffhold, "spherify": config.spherify, "ndc": not config.no_ndc,
                "val_view": config.val_view}
    if config.dataset_type == "nerfstudio":
        return {"white_bkgd": config.white_bkgd, "holdout": config.llffhold}
    return {}


def scene_from_config(config: DataConfig, write: bool = True) -> Scene:
    """Loads (generating the demo scene first when asked, and ``write`` allows) and applies near/far overrides."""
    if config.generate_demo:
        if config.dataset_type != "blender":
            raise SceneError(f"generate_demo makes a blender scene, but dataset_type is {config.dataset_type!r}")
        ensure_demo_scene(config.datadir, write=write)
    scene = load_scene(config.dataset_type, config.datadir, **loader_options(config))
    if config.near is None and config.far is None:
        return scene
    if scene.ndc:
        raise SceneError("near/far cannot be overridden for NDC rays (t spans [0, 1]); set no_ndc to use scene bounds")
    near = scene.near if config.near is None else config.near
    far = scene.far if config.far is None else config.far
    if not 0 <= near < far:
        raise SceneError(f"near/far must satisfy 0 <= near < far, got near {near:g}, far {far:g}")
    return dataclasses.replace(scene, near=near, far=far)


__all__ = ["DATASETS", "Scene", "SceneError", "load_blender", "load_llff", "load_nerfstudio", "load_scene", "loader_options", "scene_from_config"]
