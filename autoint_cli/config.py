"""Typed configuration: plain dataclasses whose fields are the config keys and the command-line flags.

One field, one key, one flag, spelled the same (the NeRF vocabulary where the
meaning matches). Each field's metadata holds its flag's help text, and where
needed its choices, its parser and its least value. Parsers are built from the
dataclasses (:func:`add_dataclass_args`), so no flag is defined twice. This
module loads nothing: scenes are loaded in :mod:`autoint_cli.scene`.
"""
import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Type, TypeVar

from .autoint.layers import MODEL_ACTIVATIONS
from .utils.fastpath import COMPILE_MODES, GRAPHING_COMPILE_MODES, PRECISIONS
from .volume.rendering import QUADRATURE_SAMPLES, REFINE_SECTIONS, RENDERERS

T = TypeVar("T")

# What encodes the point o + t d before the integral networks' MLP.
ENCODINGS = ("frequency", "hashgrid")


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


def parse_chunk(text: str) -> Optional[int]:
    """``auto`` (None: measured) or a positive number of rays."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of rays or auto, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _help(help_text: str, choices: Optional[Sequence[str]] = None, parse=None, minimum: Optional[int] = None, metavar: Optional[str] = None,
          **kwargs) -> Any:
    """A field with its flag's help text; ``choices``, ``parse`` (text -> value), ``minimum`` and ``metavar`` when given."""
    extra = {"choices": choices, "parse": parse, "minimum": minimum, "metavar": metavar}
    return field(metadata={"help": help_text, **{k: v for k, v in extra.items() if v is not None}}, **kwargs)


@dataclass(frozen=True)
class DataConfig:
    """Which scene to load and how."""

    datadir: str = _help("folder of the scene")
    dataset_type: str = _help("scene format (a loader of autoint_cli.scene.DATASETS)", default="blender")
    half_res: bool = _help("blender: load at half resolution (area filter)", default=False)
    white_bkgd: bool = _help("blender, nerfstudio: composite RGBA on white (black when false)", default=True)
    testskip: int = _help("blender: keep every k-th val and test view", default=1)
    factor: int = _help("llff: image downsampling factor (images_<factor>/)", default=8)
    llffhold: int = _help("llff, nerfstudio (without its own split lists): hold out every k-th image for test and val (0: none)", default=8)
    no_ndc: bool = _help("llff: do not map rays to normalised device coordinates", default=False)
    spherify: bool = _help("llff: 360-degree capture: re-centre on a sphere", default=False)
    val_view: Tuple[int, ...] = _help("llff: hold these training images out as the val split, for tuning (-1: val is the test split, as NeRF)",
                                      default=(-1,))
    near: Optional[float] = _help("override the scene's near bound", default=None)
    far: Optional[float] = _help("override the scene's far bound", default=None)
    generate_demo: bool = _help("generate the demo scene into datadir when it is missing", default=False)




@dataclass(frozen=True)
class ModelConfig:
    """The integral networks and the sampling network (AutoInt paper defaults)."""

    n_sections: int = _help("N, piecewise sections per ray", minimum=1, default=32)
    samples_per_section: int = _help("M, stratified grad-network samples per section in training", minimum=1, default=4)
    use_sampler: bool = _help("learn section posts with the sampling network (else uniform sections)", default=True)
    activation: str = _help("activation of the integral networks", choices=MODEL_ACTIVATIONS, default="swish")
    netdepth: int = _help("linear layers of each integral network", minimum=1, default=10)
    netwidth: int = _help("width of the integral networks", minimum=1, default=256)
    skip: int = _help("join the encoded input to the activations after this many layers (NeRF's skip connection: 5; 0: none)",
                      minimum=0, default=0)
    encoding: str = _help("features of the point o + t d: frequency (positional encoding) or hashgrid (multiresolution grid)",
                          choices=ENCODINGS, default="frequency")
    multires: int = _help("positional-encoding frequencies of the point o + t d (beside the grid with encoding = hashgrid)", minimum=0, default=10)
    multires_views: int = _help("positional-encoding frequencies of the ray's direction code", minimum=0, default=4)
    shared_trunk: bool = _help("one network with a density and a colour head instead of two networks", default=False)
    colour_by_density: float = _help("kappa > 0: a section's colour is the mean of its colour logit weighted by density + kappa "
                                     "(the colour outputs carry (sigma + kappa) * logit), so the empty part of a section weighs kappa; "
                                     "0: the plain mean over the section (AutoInt's)", minimum=0, default=0.0)
    sampler_depth: int = _help("linear layers of the sampling network", minimum=1, default=6)
    sampler_width: int = _help("width of the sampling network", minimum=1, default=256)
    sampler_multires: int = _help("positional-encoding frequencies of the sampling network's input", minimum=0, default=5)
    w0: float = _help("sine activation frequency (activation = sine)", default=30.0)
    grid_levels: int = _help("hashgrid: resolutions of the grid", minimum=1, default=16)
    grid_features: int = _help("hashgrid: features per resolution", minimum=1, default=2)
    grid_log2_size: int = _help("hashgrid: log2 of the table entries per resolution", minimum=1, default=19)
    grid_min_res: int = _help("hashgrid: coarsest resolution", minimum=1, default=16)
    grid_max_res: int = _help("hashgrid: finest resolution", minimum=1, default=1024)
    bound: float = _help("hashgrid: the grid covers [-bound, bound]^3 (0: the scene's own bound)", default=0.0)


@dataclass(frozen=True)
class RunConfig:
    """A training run: where it logs, how it optimises, how often it reports."""

    expname: str = _help("experiment name: the run's folder under basedir")
    basedir: str = _help("folder of all runs", default="logs")
    N_rand: int = _help("rays per gradient step", minimum=1, default=4096)
    lrate: float = _help("Adam learning rate", default=5e-4)
    lrate_decay: float = _help("learning rate falls 10x every lrate_decay*1000 steps", default=250.0)
    grid_lrate: float = _help("Adam learning rate of a hashgrid's feature tables, on the same schedule (0: lrate)", minimum=0, default=0.0)
    adam_eps: float = _help("Adam's epsilon (a grid's small, sparse table gradients need a small one)", default=1e-8)
    n_iters: int = _help("training steps (0 saves the untrained model)", minimum=0, default=200000)
    precrop_iters: int = _help("steps that draw pixels from the central crop of each view only (NeRF's precrop)", minimum=0, default=0)
    precrop_frac: float = _help("the central crop's share of the height and width", default=0.5)
    raw_noise_std: float = _help("deviation of Gaussian noise added to each section's raw density while training (NeRF's regulariser)",
                                 minimum=0, default=0.0)
    random_bkgd: bool = _help("train on a random background colour per ray: pixels are composited again on it by their alpha (opaque "
                              "pixels stay as they are) and rendered over it, so density in empty space is never free", default=False)
    smooth_rgb: float = _help("weight of a penalty on the raw colour changing between neighbouring samples along a training ray: "
                              "a section's colour is the mean over all of it, so colour behind surfaces must not stray", minimum=0,
                              default=0.0)
    negative_sigma: float = _help("weight of a penalty on negative raw density along a training ray (the optical depth it would "
                                  "cancel): only a section's mean density passes the relu, so density below zero behind a surface "
                                  "makes a section that reaches past it see-through", minimum=0, default=0.0)
    sigma_consistency: float = _help("weight of a penalty on the raw density at points of a training ray differing from the density "
                                     "there seen along another training pixel's direction: AutoInt's density depends on the direction, "
                                     "and this ties the directions no view constrains to those the views do", minimum=0, default=0.0)
    distortion: float = _help("weight of mip-NeRF 360's distortion penalty on a training ray's section weights (the mean distance "
                              "between two points drawn from them, in units of far - near): it gathers each ray's weight onto one "
                              "short stretch, so haze spread through empty space costs", minimum=0, default=0.0)
    strata_loss: float = _help("weight of the squared error of a second render of each training ray from the same samples, each "
                               "standing for its own stratum (N x samples_per_section sections): the field is fitted for sections "
                               "cut finer than the sampler's, as an unseen ray's may need", minimum=0, default=0.0)
    sampler_fit: float = _help("weight of a penalty on the sampler's posts lying away from those that would give each section an "
                               "equal share of the ray's weight (a quarter of it spread evenly along the ray): the sampler learns "
                               "where the field's surfaces are from an objective of its own, not only through the colour error, "
                               "so that most sections fall on them; needs use_sampler", minimum=0, default=0.0)
    coarse_loss: float = _help("weight of the squared error of a second render of each training ray from the same samples on half "
                               "as many sections (every other post, each merged section's mean the length-weighted mean of its two): "
                               "the field is fitted for rendering at --n_sections N/2 too; needs an even n_sections", minimum=0,
                               default=0.0)
    sample_by_error: float = _help("share of each step's rays drawn with probability proportional to the squared error their pixel "
                                   "had when last trained on (the rest uniformly; 0 to 1): steps go where the field is still wrong, "
                                   "not to the background it already renders. Not kept in checkpoints: a resumed run starts "
                                   "the errors afresh. One process only", minimum=0, default=0.0)
    error_alpha: float = _help("with sample_by_error: weight each ray's squared error by (P p)^-error_alpha, p the probability "
                               "that its pixel was drawn and P the training pixels (scaled to a mean of 1 a step): 0 trains on "
                               "the rays as drawn, so the hard pixels count more; 1 keeps the uniform objective and the draws "
                               "only lower its variance", minimum=0, default=0.0)
    error_iters: int = _help("with sample_by_error: steps (after the precrop) over which its share falls linearly to 0, so that "
                             "the error draws speed the start up and the uniform draws have the end (0: it stays)", minimum=0,
                             default=0)
    post_shift: float = _help("while training, move each inner post of the sampler's sections by up to this share of the "
                              "neighbouring section (0 to 1), so that the field is fitted on sections that straddle the trained ones",
                              minimum=0, default=0.0)
    viewer: bool = _help("serve autoint-view's page on 127.0.0.1:viewer_port while training, drawn from the current weights "
                         "(each browser at most twice a second)", default=False)
    viewer_port: int = _help("port of the training viewer's page", minimum=1, default=7007)
    max_train_seconds: float = _help("stop after this much training time (0: no limit)", minimum=0, default=0.0)
    chunk: int = _help("rays evaluated together (training sub-batches and rendering); lower it when memory runs out", minimum=1, default=4096)
    precision: str = _help("matrix precision (bf16: autocast; Phi stays float32)", choices=PRECISIONS, default="tf32")
    compile: bool = _help("torch.compile each sub-batch's loss and its backward: sampling network, grad networks, compositing (CUDA)",
                          default=False)
    compile_mode: str = _help("torch.compile mode with compile; reduce-overhead replays the loss and its backward as CUDA graphs",
                              choices=COMPILE_MODES, default="default")
    i_print: int = _help("steps between console/TensorBoard scalars", minimum=1, default=100)
    i_img: int = _help("steps between a validation render in TensorBoard (0: never)", minimum=0, default=500)
    i_weights: int = _help("steps between checkpoints", minimum=1, default=10000)
    keep_checkpoints: int = _help("checkpoints kept: the latest K (0: all), besides every i_keep-th step's", minimum=0, default=5)
    i_keep: int = _help("steps between checkpoints that are kept for good, whatever keep_checkpoints says (0: none)", minimum=0, default=0)
    i_testset: int = _help("steps between test-set renders (0: never)", minimum=0, default=50000)
    i_video: int = _help("steps between path videos (0: never)", minimum=0, default=50000)
    no_reload: bool = _help("start afresh instead of resuming from the latest checkpoint", default=False)
    max_nonfinite_steps: int = _help("stop after this many steps in a row with a NaN/inf loss or gradient (each is skipped)", minimum=1, default=10)
    seed: int = _help("random seed (weights, rays, samples)", default=0)
    quiet: bool = _help("no progress bar", default=False)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is built from."""

    data: DataConfig
    model: ModelConfig
    run: RunConfig


CONFIG_GROUPS = {"data": DataConfig, "model": ModelConfig, "run": RunConfig}


@dataclass(frozen=True)
class LoadConfig:
    """Which trained run ``autoint-render`` and ``autoint-eval`` load, and which of its views."""

    expdir: Path = _help("the run folder, logs/<expname>")
    ckpt: Optional[Path] = _help("a checkpoint file (default: the latest of the run)", default=None)
    max_views: Optional[int] = _help("only the first views of the split", minimum=1, default=None)
    testskip: Optional[int] = _help("blender: every k-th test and val view (default: the run's; NeRF's 25-view protocol is 8)", default=None)


def compiles_own_graphs(compile_: Optional[bool], compile_mode: str) -> bool:
    """Whether torch.compile in ``compile_mode`` replays CUDA graphs of its own, so that the renderer's must stay off."""
    return bool(compile_) and compile_mode in GRAPHING_COMPILE_MODES


@dataclass(frozen=True)
class SpeedConfig:
    """How fast a trained run is rendered: the renderer's fast paths (autoint_cli.render.renderer.RenderSettings)."""

    chunk: Optional[int] = _help("rays rendered together (auto: measured to fit half the free GPU memory; 32768 on the CPU at N = 16)",
                                 parse=parse_chunk, metavar="N|auto", default=None)
    precision: Optional[str] = _help("matrix precision (default: the run's; bf16 keeps Phi and its differences in float32)",
                                     choices=PRECISIONS, default=None)
    compile: bool = _help("torch.compile the whole chunk renderer (CUDA; pays a warm-up per setting)", default=False)
    compile_mode: str = _help("torch.compile mode with --compile; reduce-overhead replays CUDA graphs of the fixed-shape chunks "
                              "(the max-autotune modes search Triton GEMMs: a long warm-up, no gain measured on an H100)",
                              choices=COMPILE_MODES, default="default")
    fused_mlp: bool = _help("with --precision bf16 on CUDA, run Phi's MLP as one fused Triton kernel "
                            "(same precision: bf16 products, Phi's output layer in float32)", default=True)
    cuda_graphs: bool = _help("on CUDA, replay each chunk shape as one CUDA graph: the CPU stops limiting small chunks "
                              "(a capture per shape; not with the compile modes that make graphs of their own)", default=False)

    def conflict(self, prefix: str = "--") -> Optional[str]:
        """What two of these flags that cannot go together say, or None."""
        if self.cuda_graphs and compiles_own_graphs(self.compile, self.compile_mode):
            return f"{prefix}cuda_graphs: --compile_mode {self.compile_mode} replays CUDA graphs of its own; choose one or the other"
        return None


@dataclass(frozen=True)
class ViewSpeedConfig(SpeedConfig):
    """SpeedConfig for ``autoint-view``: compiled and replayed as CUDA graphs unless told otherwise where CUDA is, since there
    a frame's milliseconds count for more than a warm-up before the page is served."""

    compile: Optional[bool] = _help("torch.compile the renderer (default: on with CUDA; about a minute of warm-up before the page "
                                    "is served, again for each new N)", default=None)
    cuda_graphs: Optional[bool] = _help("replay the renderer's pieces of rays as CUDA graphs (default: on with CUDA, unless "
                                        "--compile_mode makes graphs of its own)", default=None)

    def resolved(self, cuda: bool) -> SpeedConfig:
        """The plain SpeedConfig, what was left to the default decided by whether the device is a CUDA one."""
        compile_ = cuda if self.compile is None else self.compile
        graphs = cuda and not compiles_own_graphs(compile_, self.compile_mode) if self.cuda_graphs is None else self.cuda_graphs
        return plain_speed(self, compile=compile_, cuda_graphs=graphs)


@dataclass(frozen=True)
class EvalSpeedConfig(SpeedConfig):
    """SpeedConfig for ``autoint-eval``: frames that skip empty space come in several pieces of rays each, and compiled
    without CUDA graphs each piece waits on the CPU's call (on an H200 such frames were slower than drawing every
    pixel), so with ``--skip_empty`` and ``--compile`` on CUDA the pieces are replayed as graphs unless told otherwise."""

    cuda_graphs: Optional[bool] = _help("on CUDA, replay each chunk shape as one CUDA graph (default: on with --skip_empty and "
                                        "--compile, unless --compile_mode makes graphs of its own; else off)", default=None)

    def resolved(self, cuda: bool, skip_empty: bool) -> SpeedConfig:
        """The plain SpeedConfig, the graphs decided by the device, skipping and compiling when left to the default."""
        wanted = cuda and skip_empty and self.compile and not compiles_own_graphs(self.compile, self.compile_mode)
        graphs = wanted if self.cuda_graphs is None else self.cuda_graphs
        return plain_speed(self, cuda_graphs=bool(graphs))


def plain_speed(speed: SpeedConfig, **decided) -> SpeedConfig:
    """A command's own SpeedConfig (whose defaults wait on the device) as the plain one, with the values ``decided``."""
    return SpeedConfig(**{**{f.name: getattr(speed, f.name) for f in dataclasses.fields(SpeedConfig)}, **decided})


REFINE_HELP = ("R: a second pass of the integral renderer cuts the sections around each ray's surface (its section of most "
               "weight) in R each, with Phi at only their new posts (1: one pass)")
# Skipping empty space and section windows (autoint_cli.render.skipping), as autoint-view and autoint-eval take them.
SKIP_EMPTY_HELP = ("render at full size only where a 4x smaller first pass sees something, the background elsewhere (details "
                   "smaller than 4 pixels can be missed)")
WINDOW_SECTIONS_HELP = ("when skipping empty space, draw a pixel on only this many consecutive sections where the first pass's rays "
                        "around it need no more (0: always all N)")
WINDOW_SECTIONS = 4
REFINE_SECTIONS_HELP = "how many sections around each ray's surface --refine cuts"


@dataclass(frozen=True)
class RenderConfig:
    """What ``autoint-render`` renders and where it writes."""

    split: str = _help("the views to render", choices=("test", "val", "train", "path"), default="test")
    renderer: str = _help("integral (Phi at the posts) or quadrature (grad networks at K samples)", choices=RENDERERS, default="integral")
    n_sections: Optional[int] = _help("N sections for the integral renderer (default: as trained)", minimum=1, default=None)
    n_samples: int = _help("K samples per ray for the quadrature renderer", minimum=1, default=QUADRATURE_SAMPLES)
    refine: int = _help(REFINE_HELP, minimum=1, default=1)
    refine_sections: int = _help(REFINE_SECTIONS_HELP, minimum=1, default=REFINE_SECTIONS)
    video: Optional[bool] = _help("also write rgb.mp4 and disp.mp4 (default: only for path)", default=None)
    depth: bool = _help("also write each view's expected depth and opacity as float32 depth_XXX.npy / acc_XXX.npy, depth.json "
                        "saying what they hold, and turbo-coloured depth_XXX.png (and depth.mp4 with the video)", default=False)
    camera_path: Optional[Path] = _help("render this camera-path file instead of a split: nerfstudio's export or keyframes "
                                        "(docs: autoint_cli/scene/camera_path.py); the video takes its fps", default=None)
    fps: Optional[float] = _help("frames per second of --camera_path (default: the file's)", default=None)
    seconds: Optional[float] = _help("length of a keyframe --camera_path in seconds (default: the file's)", default=None)
    out: Optional[Path] = _help("output folder (default: EXPDIR/render_<split or camera_path>_<step>)", default=None)


@dataclass(frozen=True)
class ViewConfig:
    """Where ``autoint-view`` serves and how it draws."""

    host: str = _help("address to serve on (127.0.0.1: this machine only; anything else is reachable by others)", default="127.0.0.1")
    port: int = _help("port of the page", minimum=1, default=7007)
    n_sections: Optional[int] = _help("N sections at start (default: as trained; a slider changes it)", minimum=1, default=None)
    max_height: Optional[int] = _help("the most lines a frame is drawn with, below the browser's view size (default: 800 with CUDA, "
                                      "64 on the CPU)", minimum=16, default=None)
    skip_empty: bool = _help(SKIP_EMPTY_HELP + " (a checkbox on the page turns it off)", default=True)
    window_sections: int = _help(WINDOW_SECTIONS_HELP, minimum=0, default=WINDOW_SECTIONS)
    refine: int = _help(REFINE_HELP + "; a refined frame draws every pixel on all its sections (no --window_sections)", minimum=1,
                        default=1)
    refine_sections: int = _help(REFINE_SECTIONS_HELP, minimum=1, default=REFINE_SECTIONS)


@dataclass(frozen=True)
class EvalConfig:
    """What ``autoint-eval`` measures and where it writes."""

    n_sections: Tuple[int, ...] = _help("N values for the integral renderer", minimum=1, default=(8, 16, 32))
    quadrature_samples: int = _help("K for the quadrature renderer (0: skip it)", minimum=0, default=QUADRATURE_SAMPLES)
    refine: Tuple[int, ...] = _help(REFINE_HELP + "; several values score each N at each", minimum=1, default=(1,))
    refine_sections: int = _help(REFINE_SECTIONS_HELP, minimum=1, default=REFINE_SECTIONS)
    split: str = _help("the views to evaluate", choices=("test", "val", "train"), default="test")
    skip_empty: bool = _help(SKIP_EMPTY_HELP + ", as autoint-view does, and score those frames (off: every pixel, exact)",
                             default=False)
    window_sections: int = _help(WINDOW_SECTIONS_HELP, minimum=0, default=WINDOW_SECTIONS)
    out: Optional[Path] = _help("metrics file (default: EXPDIR/metrics.json)", default=None)


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
    return TrainConfig(**{name: cls(**{f.name: _stored(values[f.name], f.type) for f in dataclasses.fields(cls) if f.name in values})
                          for name, cls in CONFIG_GROUPS.items()})


def _stored(value: Any, kind: Any) -> Any:
    """A checkpoint's value as its field holds it: a list as a tuple, and a single value for a field that has become a
    tuple (a checkpoint from before val_view took several views) as a tuple of one."""
    if typing.get_origin(kind) is not tuple:
        return value
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def check_train_config(config: TrainConfig) -> None:
    """Value checks that a type cannot express; a ConfigError names the key and what it expects."""
    m, r = config.model, config.run
    for group in (m, r):
        problem = invalid_value(group, prefix="")
        if problem:
            raise ConfigError(problem)
    if not 0 < r.precrop_frac <= 1:
        raise ConfigError(f"precrop_frac must be in (0, 1], got {r.precrop_frac}")
    if not 0 <= r.post_shift <= 1:
        raise ConfigError(f"post_shift must be in [0, 1], got {r.post_shift}")
    if r.sample_by_error > 1:
        raise ConfigError(f"sample_by_error is a share of the rays: it must be in [0, 1], got {r.sample_by_error:g}")
    if (r.error_alpha > 0 or r.error_iters > 0) and not r.sample_by_error > 0:
        what = f"error_alpha {r.error_alpha:g}" if r.error_alpha > 0 else f"error_iters {r.error_iters}"
        raise ConfigError(f"{what} shapes the rays that sample_by_error draws: set sample_by_error too")
    if not r.lrate > 0:
        raise ConfigError(f"lrate must be positive, got {r.lrate}")
    if not r.lrate_decay > 0:
        raise ConfigError(f"lrate_decay must be positive, got {r.lrate_decay}")
    if not r.adam_eps > 0:
        raise ConfigError(f"adam_eps must be positive, got {r.adam_eps}")
    if r.sampler_fit > 0 and not m.use_sampler:
        raise ConfigError(f"sampler_fit {r.sampler_fit:g} needs use_sampler = True (uniform sections have no posts to fit)")
    if r.coarse_loss > 0 and m.n_sections % 2:
        raise ConfigError(f"coarse_loss {r.coarse_loss:g} merges sections two at a time: n_sections must be even, not {m.n_sections}")
    if m.skip >= m.netdepth:
        raise ConfigError(f"skip must be below netdepth ({m.netdepth}), got {m.skip}")
    if m.bound < 0:
        raise ConfigError(f"bound must be 0 (the scene's) or positive, got {m.bound}")
    if not r.expname or Path(r.expname).name != r.expname or r.expname in (".", ".."):
        raise ConfigError(f"expname must be a plain folder name, got {r.expname!r}")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, title: str = "", choices: Optional[Mapping[str, Sequence[str]]] = None) -> None:
    """One flag per field of ``cls``; a field without a default becomes a required option.

    ``choices`` adds choices by field name to those in the fields' metadata
    (for lists that live above this module, such as the dataset registry).
    """
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kwargs = _flag_options(f, hints[f.name])
        if choices and f.name in choices:
            kwargs["choices"] = list(choices[f.name])
        group.add_argument("--" + f.name, **kwargs)


def _flag_options(f: dataclasses.Field, kind: Any) -> Dict[str, Any]:
    """add_argument's keywords for field ``f`` of type ``kind``."""
    if typing.get_origin(kind) is typing.Union and type(None) in typing.get_args(kind):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    kwargs: Dict[str, Any] = {"help": f.metadata.get("help", "")}
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs["default"] = default
        shown = "auto" if default is None and f.metadata.get("parse") is parse_chunk else default
        if isinstance(default, tuple):
            shown = " ".join(str(v) for v in default)
        kwargs["help"] += f" (default: {shown})"
    if typing.get_origin(kind) is tuple:
        kwargs.update(type=typing.get_args(kind)[0], nargs="+")
    elif kind is bool:
        # `--white_bkgd` alone means true; `--white_bkgd false` and `white_bkgd = False` in a file turn it off.
        kwargs.update(type=parse_bool, nargs="?", const=True, metavar="BOOL")
    else:
        kwargs["type"] = kind
    for key in ("choices", "metavar"):
        if key in f.metadata:
            kwargs[key] = list(f.metadata[key]) if key == "choices" else f.metadata[key]
    if "parse" in f.metadata:
        kwargs["type"] = f.metadata["parse"]
    return kwargs


def from_namespace(cls: Type[T], namespace: argparse.Namespace) -> T:
    """The ``cls`` of the parsed flags (lists become tuples, as the frozen dataclasses hold them)."""
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def invalid_value(config: Any, prefix: str = "--") -> Optional[str]:
    """The first field of ``config`` outside its metadata's ``minimum`` or ``choices``, as
    "--name must be at least m, got v" or "--name must be one of a, b, got 'v'", then what its ``conflict`` method (if it has
    one) says of flags that cannot go together; else None (None values pass)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = [v for v in (value if isinstance(value, tuple) else (value,)) if v is not None]
        minimum, choices = f.metadata.get("minimum"), f.metadata.get("choices")
        below = [v for v in values if minimum is not None and v < minimum]
        if below:
            return f"{prefix}{f.name} must be at least {minimum}, got {below[0]}"
        outside = [v for v in values if choices is not None and v not in choices]
        if outside:
            return f"{prefix}{f.name} must be one of {', '.join(choices)}, got {outside[0]!r}"
    conflict = getattr(config, "conflict", None)
    return conflict(prefix) if callable(conflict) else None
