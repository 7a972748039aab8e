"""A Hugging Face ``Trainer`` script, as a user writes one: a tiny GPT-2 on synthetic tokens.

It saves ``out/checkpoint-N`` every ``--save-steps`` steps (the Trainer's own layout:
``model.safetensors``, ``optimizer.pt``, ``scheduler.pt``, ``rng_state_R.pth``,
``trainer_state.json``) and resumes from the newest one at start (``get_last_checkpoint``,
the example scripts' idiom), or from ``--resume_from_checkpoint PATH``. No download: the
model is built from a config, the data are random tokens.

    torchrun --nproc-per-node 2 hf_trainer.py --max-steps 12 --save-steps 4

``--sampler own`` trains with the script's own shuffling sampler (a ``Trainer`` subclass
overriding ``_get_train_sampler``): a generator seeded once and advanced by each epoch, so
an epoch's order depends on how many epochs it has iterated, not on the epoch. Resumed in
a later epoch, it shuffles the first epoch's order again (transformers #8874's shape).
``--no-resume`` never resumes; ``--abort-at-exit`` ends the process with SIGABRT after
training, as gloo DDP on CPU sometimes does at interpreter exit.
"""

from __future__ import annotations

import argparse
import atexit
import os
from collections.abc import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built here: never reach the Hub

import torch
from torch.utils.data import Dataset, Sampler
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint


class RandomTokens(Dataset):
    """``n`` sequences of random token ids; a causal LM learns to predict them."""

    def __init__(self, n: int = 48, length: int = 16, vocab: int = 64) -> None:
        self.ids = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class OwnShuffle(Sampler[int]):
    """Shuffles each epoch with one generator seeded at start: no ``set_epoch``."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.size, generator=self.generator).tolist())


class OwnShuffleTrainer(Trainer):
    """A ``Trainer`` that shuffles with the script's own sampler."""

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler[int]:
        return OwnShuffle(len(train_dataset if train_dataset is not None else self.train_dataset), self.args.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="out")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--save-steps", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--resume_from_checkpoint", default=None)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--abort-at-exit", action="store_true")
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--sampler", choices=("trainer", "own"), default="trainer")
    args = parser.parse_args()

    training = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        save_steps=args.save_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=1e-3,
        warmup_steps=2,
        logging_steps=4,
        seed=0,
        use_cpu=True,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    set_seed(training.seed)  # before the model: its initial weights
    model = GPT2LMHeadModel(config)
    trainer_class = OwnShuffleTrainer if args.sampler == "own" else Trainer
    trainer = trainer_class(model=model, args=training, train_dataset=RandomTokens(args.samples))

    resume = args.resume_from_checkpoint
    if resume is None and not args.no_resume and os.path.isdir(args.output_dir):
        resume = get_last_checkpoint(args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    if args.abort_at_exit:
        atexit.register(os.abort)


if __name__ == "__main__":
    main()
