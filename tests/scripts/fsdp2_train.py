"""A plain PyTorch FSDP2 training loop checkpointed with torch.distributed.checkpoint (DCP).

The model is sharded with ``fully_shard`` (each rank holds a shard of every parameter
and of its optimizer state); every ``--save-every`` steps all ranks save one DCP
checkpoint into ``step_N/`` (the model's and optimizer's sharded state dicts, the
scheduler, the step) and each rank its loader's position into ``step_N/loader_rank_R.pt``;
at start the script resumes from the highest ``step_*`` directory whose ``.metadata``
exists. No Lightning; runs on CPU (gloo) as on GPUs.

    torchrun --nproc-per-node 2 fsdp2_train.py --max-steps 12 --save-every 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler


def latest_checkpoint(directory: Path) -> Path | None:
    complete = [p for p in directory.glob("step_*") if (p / ".metadata").exists()]
    return max(complete, key=lambda p: int(p.name.split("_")[1]), default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", default="checkpoints")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--save-every", type=int, default=4)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=generator)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    sampler = StatefulDistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = StatefulDataLoader(data, batch_size=4, sampler=sampler, generator=generator)

    ckpt_dir = Path(args.ckpt_dir)
    step, epoch = 0, 0
    latest = latest_checkpoint(ckpt_dir)
    if latest is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state, "extra": {"step": 0, "epoch": 0}}
        dcp.load(state, checkpoint_id=str(latest))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        step, epoch = state["extra"]["step"], state["extra"]["epoch"]
        own = torch.load(latest / f"loader_rank_{rank}.pt", weights_only=False)
        loader.load_state_dict(own["loader"])
        scheduler.load_state_dict(own["scheduler"])

    while step < args.max_steps:
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            loss = nn.functional.mse_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % args.save_every == 0 and step < args.max_steps:
                target = ckpt_dir / f"step_{step}"
                model_state, optim_state = get_state_dict(model, optimizer)
                extra = {"step": step, "epoch": epoch}
                dcp.save({"model": model_state, "optimizer": optim_state, "extra": extra}, checkpoint_id=str(target))
                own = {"loader": loader.state_dict(), "scheduler": scheduler.state_dict()}
                torch.save(own, target / f"loader_rank_{rank}.pt")
            if step >= args.max_steps:
                break
        else:
            epoch += 1
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
