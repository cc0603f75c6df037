"""Config files, flags and dataclasses: one vocabulary."""
import dataclasses

import configargparse
import pytest

from autoint_cli.cli import CHOICES
from autoint_cli.config import (DataConfig, ModelConfig, RunConfig, TrainConfig, add_dataclass_args, flatten, from_namespace, parse_bool,
                                unflatten)
from autoint_cli.scene import SceneError, scene_from_config
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene


def parse(argv, config_text=None, tmp_path=None):
    parser = configargparse.ArgumentParser()
    parser.add_argument("--config", is_config_file=True)
    add_dataclass_args(parser, DataConfig, choices=CHOICES)
    if config_text is not None:
        path = tmp_path / "config.txt"
        path.write_text(config_text)
        argv = ["--config", str(path), *argv]
    return from_namespace(DataConfig, parser.parse_args(argv))


def test_every_field_is_a_flag_with_help():
    parser = configargparse.ArgumentParser()
    add_dataclass_args(parser, DataConfig)
    flags = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(DataConfig):
        assert f.name in flags and flags[f.name].help, f.name


def test_file_values_and_flag_precedence(tmp_path):
    text = "datadir = data/x\ndataset_type = llff\nfactor = 4\nwhite_bkgd = False\nno_ndc = True\nnear = 0.5\n"
    config = parse(["--factor", "2"], text, tmp_path)
    assert config == DataConfig(datadir="data/x", dataset_type="llff", factor=2, white_bkgd=False, no_ndc=True, near=0.5)


def test_val_view_takes_one_or_several_views(tmp_path):
    """A file's single value, a flag's list and the default all become tuples; a checkpoint's config from before val_view took
    several views (a single int) loads as a tuple of one, and a stored config round-trips."""
    assert parse([], "datadir = d\nval_view = 10\n", tmp_path).val_view == (10,)
    assert parse(["--datadir", "d", "--val_view", "4", "10"]).val_view == (4, 10)
    assert parse(["--datadir", "d"]).val_view == (-1,)
    stored = flatten(TrainConfig(DataConfig(datadir="d", val_view=(4, 10)), ModelConfig(), RunConfig(expname="e")))
    assert unflatten(stored).data.val_view == (4, 10)
    assert unflatten({**stored, "val_view": 10}).data.val_view == (10,)
    assert unflatten({**stored, "val_view": -1}).data.val_view == (-1,)


def test_boolean_spellings(tmp_path):
    assert parse(["--datadir", "d", "--half_res"]).half_res is True
    assert parse(["--datadir", "d", "--white_bkgd", "false"]).white_bkgd is False
    assert parse([], "datadir = d\nhalf_res = true\n", tmp_path).half_res is True
    for text, value in (("TRUE", True), ("no", False), ("0", False), ("on", True)):
        assert parse_bool(text) is value


@pytest.mark.parametrize("argv, message", [
    (["--datadir", "d", "--half_res", "maybe"], "expected true or false, got 'maybe'"),
    (["--datadir", "d", "--testskip", "x"], "invalid int value: 'x'"),
    (["--datadir", "d", "--dataset_type", "colmap"], "invalid choice: 'colmap'"),
    ([], "the following arguments are required: --datadir"),
])
def test_bad_values_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("cfg") / "tiny", DemoSceneSpec(size=8, n_train=2, n_val=1, n_test=1))


def test_scene_from_config_with_overrides(tiny):
    scene = scene_from_config(DataConfig(datadir=str(tiny), near=1.5, far=7.0, white_bkgd=False))
    assert (scene.near, scene.far, scene.background) == (1.5, 7.0, (0.0, 0.0, 0.0))
    with pytest.raises(SceneError, match="near 3, far 2"):
        scene_from_config(DataConfig(datadir=str(tiny), near=3.0, far=2.0))


def test_generate_demo_when_missing(tmp_path):
    scene = scene_from_config(DataConfig(datadir=str(tmp_path / "demo"), generate_demo=True))
    assert scene.images.shape[1:] == (64, 64, 3)
    with pytest.raises(SceneError, match="generate_demo makes a blender scene"):
        scene_from_config(DataConfig(datadir=str(tmp_path / "x"), dataset_type="llff", generate_demo=True))


def test_every_shipped_config_parses_and_passes_the_checks():
    from pathlib import Path

    from autoint_cli.config import CONFIG_GROUPS, check_train_config, train_config_from_namespace

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.txt"))
    names = {p.stem for p in configs}
    assert {"chair", "drums", "ficus", "hotdog", "lego", "materials", "mic", "ship"} <= names
    assert {"fern", "flower", "fortress", "horns", "leaves", "orchids", "room", "trex"} <= names
    assert {"demo", "lego_shared", "fern_shared"} <= names
    for path in configs:
        parser = configargparse.ArgumentParser()
        parser.add_argument("--config", is_config_file=True)
        for name, cls in CONFIG_GROUPS.items():
            add_dataclass_args(parser, cls, name)
        config = train_config_from_namespace(parser.parse_args(["--config", str(path)]))
        check_train_config(config)
        assert config.run.expname and config.data.datadir, path



def test_the_n32_recipe_is_the_n16_recipe_at_32_sections_of_one_sample():
    """lego_fast_n32_m1.txt must follow lego_fast_n16_m2.txt in everything but its sections, or the two recipes' figures
    (docs/QUALITY.md) stop comparing those alone."""
    from pathlib import Path

    def settings(name):
        lines = (Path(__file__).resolve().parents[1] / "configs" / name).read_text().splitlines()
        pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
        return {key.strip(): value.strip() for key, value in pairs}

    n16, n32 = settings("lego_fast_n16_m2.txt"), settings("lego_fast_n32_m1.txt")
    differ = {key for key in n16.keys() | n32.keys() if n16.get(key) != n32.get(key)}
    assert differ == {"expname", "n_sections", "samples_per_section"}
    assert (n32["n_sections"], n32["samples_per_section"]) == ("32", "1")
    assert int(n16["n_sections"]) * int(n16["samples_per_section"]) == 32, "the same samples a ray"

@pytest.mark.parametrize("group, change, message", [
    ("model", {"activation": "gelu"}, "activation must be one of swish, relu, sine, tanh, softplus, requ, got 'gelu'"),
    ("model", {"encoding": "triplane"}, "encoding must be one of frequency, hashgrid, got 'triplane'"),
    ("run", {"precision": "fp8"}, "precision must be one of fp32, tf32, bf16, got 'fp8'"),
    ("model", {"n_sections": 0}, "n_sections must be at least 1, got 0"),
    ("model", {"skip": 10}, "skip must be below netdepth (10), got 10"),
    ("run", {"adam_eps": 0.0}, "adam_eps must be positive, got 0.0"),
    ("run", {"grid_lrate": -1.0}, "grid_lrate must be at least 0, got -1.0"),
])
def test_check_train_config_reads_choices_and_minimums_from_the_fields(group, change, message):
    """Configs built in Python (not through the parser) meet the same checks as flags, from the same field metadata."""
    from autoint_cli.config import ConfigError, ModelConfig, RunConfig, TrainConfig, check_train_config

    parts = {"data": DataConfig(datadir="d"), "model": ModelConfig(), "run": RunConfig(expname="x")}
    parts[group] = dataclasses.replace(parts[group], **change)
    with pytest.raises(ConfigError) as error:
        check_train_config(TrainConfig(**parts))
    assert str(error.value) == message


def test_coarse_loss_needs_an_even_number_of_sections():
    """coarse_loss merges sections two at a time: an odd n_sections is refused in one line naming both keys."""
    from autoint_cli.config import ConfigError, ModelConfig, RunConfig, TrainConfig, check_train_config

    data = DataConfig(datadir="d")
    check_train_config(TrainConfig(data, ModelConfig(n_sections=32), RunConfig(expname="x", coarse_loss=0.5)))
    check_train_config(TrainConfig(data, ModelConfig(n_sections=15), RunConfig(expname="x")))
    with pytest.raises(ConfigError) as error:
        check_train_config(TrainConfig(data, ModelConfig(n_sections=15), RunConfig(expname="x", coarse_loss=0.5)))
    assert str(error.value) == "coarse_loss 0.5 merges sections two at a time: n_sections must be even, not 15"


def test_sampler_fit_needs_the_sampler():
    """sampler_fit fits the sampler's posts: with uniform sections there are none, and the config is refused in one line."""
    from autoint_cli.config import ConfigError, ModelConfig, RunConfig, TrainConfig, check_train_config

    data = DataConfig(datadir="d")
    check_train_config(TrainConfig(data, ModelConfig(), RunConfig(expname="x", sampler_fit=1e-3)))
    with pytest.raises(ConfigError) as error:
        check_train_config(TrainConfig(data, ModelConfig(use_sampler=False), RunConfig(expname="x", sampler_fit=1e-3)))
    assert str(error.value) == "sampler_fit 0.001 needs use_sampler = True (uniform sections have no posts to fit)"
