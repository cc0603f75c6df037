"""Checkpoints: atomic writes, safe loading, the latest one found."""
import pickle
from pathlib import Path

import pytest
import torch

from autoint_cli.runs.checkpoint import CheckpointError, checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint


def payload(step=3):
    return {"model": {"w": torch.randn(4, 4)}, "optimizer": {}, "step": step, "rng": {"torch": torch.get_rng_state()}, "config": {"expname": "x", "lrate": 5e-4, "near": None}}


def test_round_trip_with_weights_only(tmp_path):
    data = payload()
    path = save_checkpoint(checkpoint_path(tmp_path, 3), data)
    assert path.name == "000003.pt"
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["model"]["w"], data["model"]["w"], rtol=0, atol=0)
    assert loaded["config"] == data["config"] and loaded["step"] == 3
    assert torch.load(path, weights_only=True)["step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["000003.pt"]  # no temp file left


def test_latest_ignores_temp_and_foreign_files(tmp_path):
    for step in (5, 40, 300):
        save_checkpoint(checkpoint_path(tmp_path, step), payload(step))
    folder = tmp_path / "checkpoints"
    (folder / ".000400.pt.abc.tmp").write_bytes(b"partial")
    (folder / "notes.txt").write_text("x")
    assert latest_checkpoint(tmp_path).name == "000300.pt"
    assert latest_checkpoint(tmp_path / "elsewhere") is None


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    first = save_checkpoint(checkpoint_path(tmp_path, 1), payload(1))
    before = first.read_bytes()

    def full_disk(path, data):  # the file is begun, then the disk is full
        with open(path, "wb") as handle:
            handle.write(bytes(data)[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError):
        save_checkpoint(checkpoint_path(tmp_path, 2), payload(2))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["000001.pt"]
    assert first.read_bytes() == before and latest_checkpoint(tmp_path) == first


def test_checkpoints_take_the_umask_mode(tmp_path):
    """Like every other file of a run: 0o666 less the umask, not mkstemp's 0o600."""
    import os

    old = os.umask(0o022)
    try:
        path = save_checkpoint(checkpoint_path(tmp_path, 1), payload(1))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


class Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_crafted_pickle_is_refused_without_running(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "checkpoints" / "000001.pt"
    path.parent.mkdir()
    with open(path, "wb") as f:
        torch.save({"model": Payload(str(target)), "step": 1, "config": {}}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="000001.pt: not a readable checkpoint"):
        load_checkpoint(path)
    assert not target.exists()


def test_truncated_and_foreign_files(tmp_path):
    good = save_checkpoint(checkpoint_path(tmp_path, 1), payload(1))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt: not a readable checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="other.pt: not an autoint checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint missing"):
        load_checkpoint(tmp_path / "missing.pt")
