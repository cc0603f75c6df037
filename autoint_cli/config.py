"""Typed configuration: dataclasses whose fields are the config keys and the command-line flags.

One field, one key, one flag, spelled the same (the NeRF vocabulary where the
meaning matches). Each field's ``help`` metadata is its flag's help text.
Parsers are built from the dataclasses, so no flag is defined twice.
"""
import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Type, TypeVar

from .data import DATASETS, Scene, SceneError, load_scene
from .data.synthetic import ensure_demo_scene

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


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


ACTIVATION_CHOICES = ("swish", "sine", "softplus", "tanh", "requ", "relu")
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class ModelConfig:
    """The integral networks and the sampling network (AutoInt paper defaults)."""

    n_sections: int = _help("N, piecewise sections per ray", default=32)
    samples_per_section: int = _help("M, stratified grad-network samples per section in training", default=4)
    use_sampler: bool = _help("learn section posts with the sampling network (else uniform sections)", default=True)
    activation: str = _help("activation of the integral networks: " + " | ".join(ACTIVATION_CHOICES), default="swish")
    netdepth: int = _help("linear layers of each integral network", default=10)
    netwidth: int = _help("width of the integral networks", default=256)
    multires: int = _help("positional-encoding frequencies of the point o + t d", default=10)
    multires_views: int = _help("positional-encoding frequencies of the ray's direction code", default=4)
    shared_trunk: bool = _help("one network with a density and a colour head instead of two networks", default=False)
    sampler_depth: int = _help("linear layers of the sampling network", default=6)
    sampler_width: int = _help("width of the sampling network", default=256)
    sampler_multires: int = _help("positional-encoding frequencies of the sampling network's input", default=5)
    w0: float = _help("sine activation frequency (activation = sine)", default=30.0)


@dataclass(frozen=True)
class RunConfig:
    """A training run: where it logs, how it optimises, how often it reports."""

    expname: str = _help("experiment name: the run's folder under basedir")
    basedir: str = _help("folder of all runs", default="logs")
    N_rand: int = _help("rays per gradient step", default=4096)
    lrate: float = _help("Adam learning rate", default=5e-4)
    lrate_decay: float = _help("learning rate falls 10x every lrate_decay*1000 steps", default=250.0)
    n_iters: int = _help("training steps (0 saves the untrained model)", default=200000)
    max_train_seconds: float = _help("stop after this much training time (0: no limit)", default=0.0)
    chunk: int = _help("rays evaluated together (training sub-batches and rendering); lower it when memory runs out", default=4096)
    precision: str = _help("matrix precision: fp32 | tf32 | bf16 (bf16 for training only; Phi stays float32)", default="tf32")
    compile: bool = _help("torch.compile the grad networks (CUDA)", default=False)
    i_print: int = _help("steps between console/TensorBoard scalars", default=100)
    i_img: int = _help("steps between a validation render in TensorBoard", default=500)
    i_weights: int = _help("steps between checkpoints", default=10000)
    i_testset: int = _help("steps between test-set renders (0: never)", default=50000)
    i_video: int = _help("steps between path videos (0: never)", default=50000)
    no_reload: bool = _help("start afresh instead of resuming from the latest checkpoint", default=False)
    max_nonfinite_steps: int = _help("stop after this many steps in a row with a NaN/inf loss or gradient (each is skipped)", default=10)
    seed: int = _help("random seed (weights, rays, samples)", default=0)
    quiet: bool = _help("no progress bar", default=False)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is built from."""

    data: DataConfig
    model: ModelConfig
    run: RunConfig


CONFIG_GROUPS = {"data": DataConfig, "model": ModelConfig, "run": RunConfig}


def train_config_from_namespace(namespace: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{name: from_namespace(cls, namespace) for name, cls in CONFIG_GROUPS.items()})


def flatten(config: TrainConfig) -> Dict[str, Any]:
    """Every resolved value by its key (the keys are unique across groups)."""
    return {k: v for group in dataclasses.fields(config) for k, v in dataclasses.asdict(getattr(config, group.name)).items()}


def unflatten(values: Dict[str, Any]) -> TrainConfig:
    """The inverse of :func:`flatten`, for a config stored in a checkpoint; unknown keys are refused."""
    known = {f.name for cls in CONFIG_GROUPS.values() for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}")
    return TrainConfig(**{name: cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}) for name, cls in CONFIG_GROUPS.items()})


def check_train_config(config: TrainConfig) -> None:
    """Value checks that a type cannot express; a ConfigError names the key and what it expects."""
    m, r = config.model, config.run
    positive = {
        "n_sections": m.n_sections, "samples_per_section": m.samples_per_section, "netdepth": m.netdepth,
        "netwidth": m.netwidth, "sampler_depth": m.sampler_depth, "sampler_width": m.sampler_width,
        "N_rand": r.N_rand, "chunk": r.chunk, "i_print": r.i_print, "i_img": r.i_img,
        "i_weights": r.i_weights, "max_nonfinite_steps": r.max_nonfinite_steps,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    for key, value in {"n_iters": r.n_iters, "multires": m.multires, "multires_views": m.multires_views, "sampler_multires": m.sampler_multires,
                       "i_testset": r.i_testset, "i_video": r.i_video, "max_train_seconds": r.max_train_seconds}.items():
        if value < 0:
            raise ConfigError(f"{key} must be 0 or more, got {value}")
    if not r.lrate > 0:
        raise ConfigError(f"lrate must be positive, got {r.lrate}")
    if not r.lrate_decay > 0:
        raise ConfigError(f"lrate_decay must be positive, got {r.lrate_decay}")
    if m.activation not in ACTIVATION_CHOICES:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATION_CHOICES)}, got {m.activation!r}")
    if r.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {r.precision!r}")
    if not r.expname or Path(r.expname).name != r.expname or r.expname in (".", ".."):
        raise ConfigError(f"expname must be a plain folder name, got {r.expname!r}")


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
        elif f.name == "activation":
            kwargs["choices"] = ACTIVATION_CHOICES
        elif f.name == "precision":
            kwargs["choices"] = PRECISIONS
        group.add_argument("--" + f.name, **kwargs)


def from_namespace(cls: Type[T], namespace: argparse.Namespace) -> T:
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})
