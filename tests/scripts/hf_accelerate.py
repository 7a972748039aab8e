"""A training loop on Hugging Face Accelerate, no ``Trainer``: ``save_state`` / ``load_state``.

Every ``--save-every`` steps it writes ``checkpoints/step_N`` with ``accelerator.save_state``
(the model as ``model.safetensors``, the optimizer, the scheduler, the sampler and every
process's random states) and at start resumes from the highest ``step_N`` with
``load_state``, then skips the batches of the resumed epoch already trained
(``skip_first_batches``), as Accelerate's checkpointing example does. Shuffles with a
seedable sampler, so that an epoch's order depends on the epoch only, and gives the loader
its own generator (without it, the resumed epoch's iterator draws from the global generator
just restored, and the tool names ``rng_torch`` at the resume).

    torchrun --nproc-per-node 2 hf_accelerate.py --max-steps 12 --save-every 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def latest_checkpoint(directory: Path) -> Path | None:
    steps = sorted(directory.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return steps[-1] if steps else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", default="checkpoints")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--save-every", type=int, default=4)
    args = parser.parse_args()

    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    set_seed(0)
    x = torch.randn(48, 8, generator=torch.Generator().manual_seed(0))
    # Its own generator: each iter() draws a seed from it, not from the global one that
    # load_state has just restored (dropout would draw other masks after the resume).
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4, shuffle=True, generator=generator)
    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    step = 0
    latest = latest_checkpoint(Path(args.ckpt_dir))
    if latest is not None:
        accelerator.load_state(str(latest))
        step = int(latest.name.split("_")[1])
        accelerator.print(f"resumed from {latest} at step {step}")
    epoch, skip = divmod(step, len(loader))
    while step < args.max_steps:
        loader.set_epoch(epoch)
        for x, y in accelerator.skip_first_batches(loader, skip) if skip else loader:
            loss = nn.functional.mse_loss(model(x), y)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % args.save_every == 0 and step < args.max_steps:
                accelerator.save_state(f"{args.ckpt_dir}/step_{step}")
            if step >= args.max_steps:
                break
        epoch, skip = epoch + 1, 0
    accelerator.print(f"trained to step {step}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
