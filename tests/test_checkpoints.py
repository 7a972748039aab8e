"""Which checkpoint a resume trusts: a torn last.ckpt is skipped, nothing torn is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workers.backends.lightning import LightningBackend
from workers.checkpoints import TornCheckpointError, checkpoint_step

newest_complete_checkpoint = LightningBackend().newest_complete_checkpoint


def _save(path: Path, step: int) -> None:
    torch.save({"global_step": step, "state_dict": {"w": torch.arange(1000.0)}}, path)


def _tear(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_whole_last_checkpoint_is_preferred(tmp_path: Path) -> None:
    _save(tmp_path / "epoch=0-step=2.ckpt", 2)
    _save(tmp_path / "epoch=0-step=4.ckpt", 4)
    _save(tmp_path / "last.ckpt", 4)
    path, step, skipped = newest_complete_checkpoint(tmp_path)
    assert (path.name, step, skipped) == ("last.ckpt", 4, [])


def test_torn_last_checkpoint_falls_back_to_the_newest_whole_one(tmp_path: Path) -> None:
    _save(tmp_path / "epoch=0-step=2.ckpt", 2)
    _save(tmp_path / "epoch=0-step=4.ckpt", 4)
    _save(tmp_path / "last.ckpt", 4)
    _tear(tmp_path / "last.ckpt")
    _tear(tmp_path / "epoch=0-step=4.ckpt")
    path, step, skipped = newest_complete_checkpoint(tmp_path)
    assert (path.name, step) == ("epoch=0-step=2.ckpt", 2)
    assert len(skipped) == 2 and all("torn" in reason for reason in skipped)


def test_all_torn_is_a_clear_error(tmp_path: Path) -> None:
    _save(tmp_path / "last.ckpt", 2)
    _tear(tmp_path / "last.ckpt")
    with pytest.raises(TornCheckpointError, match="torn checkpoint: no complete checkpoint"):
        newest_complete_checkpoint(tmp_path)


def test_no_checkpoint_at_all(tmp_path: Path) -> None:
    with pytest.raises(TornCheckpointError, match="no checkpoint to resume from"):
        newest_complete_checkpoint(tmp_path)


def test_checkpoint_step_reads_the_step(tmp_path: Path) -> None:
    _save(tmp_path / "x.ckpt", 7)
    assert checkpoint_step(tmp_path / "x.ckpt") == 7
