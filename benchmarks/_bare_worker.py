"""One phase of the hand-rolled baseline of ``benchmarks/speed.py``, run by a plain torchrun.

    torchrun --standalone --nproc-per-node 2 benchmarks/_bare_worker.py {stop,go,continuous} DIR

The default spec's module and data, a plain Lightning trainer with a checkpoint callback
and nothing of stop-and-go: stop trains 2 steps and exits, go resumes from its last
checkpoint to the end, continuous trains every step. What a person would write by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness_specs.tiny_lightning import MAX_STEPS, SEED, TinyDataModule, TinyRegressionModule
from workers.harness import torchrun_trainer_kwargs


def main() -> None:
    phase, root = sys.argv[1], Path(sys.argv[2])
    pl.seed_everything(SEED, verbose=False)
    ckpt_dir = root / ("continuous" if phase == "continuous" else "harness")
    trainer = pl.Trainer(
        default_root_dir=ckpt_dir,
        max_steps=2 if phase == "stop" else MAX_STEPS,
        val_check_interval=2,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir / "checkpoints", save_last=True, every_n_train_steps=2)],
        **torchrun_trainer_kwargs(),
    )
    last = ckpt_dir / "checkpoints" / "last.ckpt"
    trainer.fit(TinyRegressionModule(), TinyDataModule(), ckpt_path=str(last) if phase == "go" else None)
    # As a careful DDP script ends: without it, gloo's threads sometimes abort the interpreter's
    # exit ("terminate called without an active exception", exit -6), about 1 launch in 8 here.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
