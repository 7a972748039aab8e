"""A user's plain Lightning training script: ``trainer.fit(model, loader, ckpt_path=...)``.

It resumes by itself from ``checkpoints/last.ckpt`` when that exists. ``--loader plain``
uses a shuffled ``torch.utils.data.DataLoader``; ``--loader stateful`` (default) a
``torchdata`` ``StatefulDataLoader``, whose position Lightning saves in the checkpoint
(sharded over ranks by torchdata's ``StatefulDistributedSampler``, not Lightning's own
``DistributedSampler``, which has no state to save).

    torchrun --nproc-per-node 2 plain_train.py --max-steps 8 --every 3
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset


class Regression(pl.LightningModule):
    """A small regression model with AdamW and a step-wise learning-rate decay."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/mse", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=generator)
    return TensorDataset(x, x.sum(dim=1, keepdim=True))


def loader(kind: str, world: int) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    if kind == "stateful":
        from torchdata.stateful_dataloader import StatefulDataLoader
        from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

        if world > 1:  # Lightning's own DistributedSampler has no state: shard with a stateful one
            # Built before Lightning starts the process group: rank and world from torchrun's env.
            rank = int(os.environ.get("RANK", "0"))
            sampler = StatefulDistributedSampler(dataset(), num_replicas=world, rank=rank, seed=1)
            return StatefulDataLoader(dataset(), batch_size=4, sampler=sampler)
        return StatefulDataLoader(dataset(), batch_size=4, shuffle=True, generator=generator)
    return DataLoader(dataset(), batch_size=4, shuffle=True, generator=generator)


def main(model_cls: type[pl.LightningModule] = Regression) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loader", choices=("stateful", "plain"), default="stateful")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--every", type=int, default=3, help="checkpoint every N steps; 0: once per epoch")
    args = parser.parse_args()
    pl.seed_everything(0)
    world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    nodes = int(os.environ.get("WORLD_SIZE", str(world))) // world  # torchrun --nnodes
    every = {"every_n_train_steps": args.every} if args.every else {}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=world,
        num_nodes=nodes,
        strategy="ddp" if world * nodes > 1 else "auto",
        max_steps=args.max_steps,
        callbacks=[ModelCheckpoint(dirpath="checkpoints", save_last=True, save_top_k=-1, **every)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=args.loader == "plain",
    )
    last = Path("checkpoints/last.ckpt")
    trainer.fit(model_cls(), loader(args.loader, world), ckpt_path=str(last) if last.exists() else None)


if __name__ == "__main__":
    main()
