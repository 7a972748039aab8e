"""A plain PyTorch DDP training loop that resumes the way BioNeMo's native recipes do.

Every ``--save-every`` steps rank 0 writes ``step_N/checkpoint.pt`` (model, optimizer,
scheduler, step, epoch) and every rank its ``step_N/dataloader_rank_R.pt`` (its loader's
position and its random generator); at start the script resumes from the highest
``step_*`` directory, if any. No Lightning.

    torchrun --nproc-per-node 2 ddp_train.py --max-steps 16 --save-every 4

``--no-save-rng`` leaves the generators out of the checkpoint (dropout then draws other
masks after a resume); ``--loader plain`` uses a ``DataLoader`` over a
``DistributedSampler``, which has no position to save; ``--no-resume`` never loads;
``--abort-at-exit`` ends the process with SIGABRT after training, as gloo DDP on CPU
sometimes does at interpreter exit ("terminate called without an active exception").
``--forget optimizer|scheduler|loader-rank1`` leaves that out of the resume (the bugs
the field files: an optimizer state never loaded, a scheduler not restored, one rank's
loader state not restored). ``--grad-scaler`` trains through a ``torch.amp.GradScaler`` whose scale starts so high
that it overflows and skips steps, now and then again as it grows back (saved with the
checkpoint unless ``--no-save-scaler``).
"""

from __future__ import annotations

import argparse
import atexit
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler


class Net(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def make_loader(kind: str, rank: int, world: int) -> tuple[DataLoader, DistributedSampler]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 8, generator=generator)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    if kind == "stateful":
        sampler = StatefulDistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
        loader = StatefulDataLoader(data, batch_size=4, sampler=sampler, generator=generator)
    else:
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(data, batch_size=4, sampler=sampler, generator=generator)
    return loader, sampler


def latest_checkpoint(directory: Path) -> Path | None:
    steps = sorted(directory.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return steps[-1] if steps else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", default="checkpoints")
    parser.add_argument("--max-steps", type=int, default=16)
    parser.add_argument("--save-every", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--save-rng", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--loader", choices=("stateful", "plain"), default="stateful")
    parser.add_argument("--abort-at-exit", action="store_true")
    parser.add_argument("--forget", choices=("optimizer", "scheduler", "loader-rank1"), default=None)
    parser.add_argument("--grad-scaler", action="store_true")
    parser.add_argument("--save-scaler", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(1234 + rank)  # each rank its own dropout stream
    model = DistributedDataParallel(Net(args.dropout))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    loader, sampler = make_loader(args.loader, rank, world)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, growth_interval=4, enabled=args.grad_scaler)

    ckpt_dir = Path(args.ckpt_dir)
    step, epoch = 0, 0
    latest = latest_checkpoint(ckpt_dir) if args.resume else None
    if latest is not None:
        state = torch.load(latest / "checkpoint.pt", weights_only=False)
        model.module.load_state_dict(state["model"])
        if args.forget != "optimizer":
            optimizer.load_state_dict(state["optimizer"])
        if args.forget != "scheduler":
            scheduler.load_state_dict(state["scheduler"])
        step, epoch = state["step"], state["epoch"]
        if state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        own = torch.load(latest / f"dataloader_rank_{rank}.pt", weights_only=False)
        if args.loader == "stateful" and not (args.forget == "loader-rank1" and rank == 1):
            loader.load_state_dict(own["loader"])
        if args.save_rng:
            torch.set_rng_state(own["rng"])
        print(f"rank {rank}: resumed from {latest} at step {step}")

    while step < args.max_steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            if step % args.save_every == 0 and step < args.max_steps:
                target = ckpt_dir / f"step_{step}"
                target.mkdir(parents=True, exist_ok=True)
                if rank == 0:
                    torch.save(
                        {
                            "model": model.module.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "step": step,
                            "epoch": epoch,
                            "scaler": scaler.state_dict() if args.save_scaler else None,
                        },
                        target / "checkpoint.pt",
                    )
                own = {"loader": loader.state_dict() if args.loader == "stateful" else None}
                if args.save_rng:
                    own["rng"] = torch.get_rng_state()
                torch.save(own, target / f"dataloader_rank_{rank}.pt")
            if step >= args.max_steps:
                break
        else:
            epoch += 1
    if rank == 0:
        print(f"trained to step {step}")
    dist.destroy_process_group()
    if args.abort_at_exit:
        atexit.register(os.abort)


if __name__ == "__main__":
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    main()
