"""Typed configuration: dataclasses whose fields are the config keys and the command-line flags.

One field, one key, one flag, spelled the same (the NeRF vocabulary where the
meaning matches). Each field's ``help`` metadata is its flag's help text.
Parsers are built from the dataclasses, so no flag is defined twice.
"""
import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Type, TypeVar

from .data import DATASETS, Scene, SceneError, load_scene
from .data.synthetic import ensure_demo_scene

T = TypeVar("T")


def parse_bool(text: str) -> bool:
    """'true'/'false' (any case), 'yes'/'no', '1'/'0'."""
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _help(help_text: str, **kwargs) -> Any:
    return field(metadata={"help": help_text}, **kwargs)


@dataclass(frozen=True)
class DataConfig:
    """Which scene to load and how."""

    datadir: str = _help("folder of the scene")
    dataset_type: str = _help("scene format: " + " | ".join(sorted(DATASETS)), default="blender")
    half_res: bool = _help("blender: load at half resolution (area filter)", default=False)
    white_bkgd: bool = _help("blender: composite RGBA on white (black when false)", default=True)
    testskip: int = _help("blender: keep every k-th val and test view", default=1)
    factor: int = _help("llff: image downsampling factor (images_<factor>/)", default=8)
    llffhold: int = _help("llff: hold out every k-th image for test and val (0: none)", default=8)
    no_ndc: bool = _help("llff: do not map rays to normalised device coordinates", default=False)
    spherify: bool = _help("llff: 360-degree capture: re-centre on a sphere", default=False)
    near: Optional[float] = _help("override the scene's near bound", default=None)
    far: Optional[float] = _help("override the scene's far bound", default=None)
    generate_demo: bool = _help("generate the demo scene into datadir when it is missing", default=False)

    def loader_options(self) -> Dict[str, Any]:
        if self.dataset_type == "blender":
            return {"half_res": self.half_res, "white_bkgd": self.white_bkgd, "testskip": self.testskip}
        if self.dataset_type == "llff":
            return {"factor": self.factor, "llffhold": self.llffhold, "spherify": self.spherify, "ndc": not self.no_ndc}
        return {}


def scene_from_config(config: DataConfig) -> Scene:
    """Loads (generating the demo scene first when asked) and applies near/far overrides."""
    if config.generate_demo:
        if config.dataset_type != "blender":
            raise SceneError(f"generate_demo makes a blender scene, but dataset_type is {config.dataset_type!r}")
        ensure_demo_scene(config.datadir)
    scene = load_scene(config.dataset_type, config.datadir, **config.loader_options())
    if config.near is None and config.far is None:
        return scene
    if scene.ndc:
        raise SceneError("near/far cannot be overridden for NDC rays (t spans [0, 1]); set no_ndc to use scene bounds")
    near = scene.near if config.near is None else config.near
    far = scene.far if config.far is None else config.far
    if not 0 <= near < far:
        raise SceneError(f"near/far must satisfy 0 <= near < far, got near {near:g}, far {far:g}")
    return dataclasses.replace(scene, near=near, far=far)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, title: str = "") -> None:
    """One flag per field of ``cls``; a field without a default becomes a required option."""
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        optional = typing.get_origin(kind) is typing.Union and type(None) in typing.get_args(kind)
        if optional:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        kwargs: Dict[str, Any] = {"help": f.metadata.get("help", "")}
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
            kwargs["help"] += f" (default: {f.default})"
        if kind is bool:
            # `--white_bkgd` alone means true; `--white_bkgd false` and `white_bkgd = False` in a file turn it off.
            kwargs.update(type=parse_bool, nargs="?", const=True, metavar="BOOL")
        else:
            kwargs["type"] = kind
        if f.name == "dataset_type":
            kwargs["choices"] = sorted(DATASETS)
        group.add_argument("--" + f.name, **kwargs)


def from_namespace(cls: Type[T], namespace: argparse.Namespace) -> T:
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})
