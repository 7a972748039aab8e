"""A user's NeMo 2 recipe: ``llm.train`` of a tiny GPT with ``AutoResume``, unchanged by stop-and-go.

It resumes by itself (``AutoResume(resume_if_exists=True)`` finds ``nemo_logs/.../checkpoints``
in the working directory), so ``stop-and-go run`` needs no ``--go-args``. NeMo venv and a
GPU only (``MegatronStrategy``):

    .venv-nemo/bin/python -m orchestrator run --nproc-per-node 1 -- tests/scripts/nemo_tiny_gpt.py
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
import torch
from megatron.core.optimizer import OptimizerConfig
from nemo import lightning as nl
from nemo.collections import llm
from nemo.collections.common.tokenizers.null_tokenizer import NullTokenizer
from nemo.lightning.io import track_io
from nemo.lightning.pytorch import callbacks as nl_callbacks
from nemo.lightning.pytorch.optim import CosineAnnealingScheduler

track_io(NullTokenizer)  # lets NeMo write the tokenizer into each checkpoint's context/

MAX_STEPS, MICRO_BATCH, SEQ = 8, 2, 32


def main() -> None:
    pl.seed_everything(1234, verbose=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    tokenizer = NullTokenizer(vocab_size=250)
    data = llm.MockDataModule(
        seq_length=SEQ,
        tokenizer=tokenizer,
        micro_batch_size=MICRO_BATCH,
        global_batch_size=MICRO_BATCH * world,
        num_train_samples=MAX_STEPS * MICRO_BATCH * world * 4,
        num_val_samples=MICRO_BATCH * world * 8,
        num_workers=0,
        pin_memory=False,
    )
    config = llm.GPTConfig(
        num_layers=2,
        hidden_size=64,
        ffn_hidden_size=128,
        num_attention_heads=4,
        seq_length=SEQ,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bf16=False,
        params_dtype=torch.float32,
        deterministic_mode=True,
    )
    optimizer = nl.MegatronOptimizerModule(
        config=OptimizerConfig(optimizer="adam", lr=1e-3, use_distributed_optimizer=False, bf16=False, fp16=False),
        lr_scheduler=CosineAnnealingScheduler(warmup_steps=2, max_steps=MAX_STEPS, min_lr=1e-4),
    )
    trainer = nl.Trainer(
        accelerator="gpu",
        devices=local,
        num_nodes=max(1, world // local),
        strategy=nl.MegatronStrategy(ckpt_async_save=False, ddp="megatron"),
        max_steps=MAX_STEPS,
        val_check_interval=2,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        use_distributed_sampler=False,
        callbacks=[nl_callbacks.ModelCheckpoint(every_n_train_steps=2, save_last=True, save_top_k=-1)],
    )
    log = nl.NeMoLogger(log_dir="nemo_logs", name="tiny_gpt", use_datetime_version=False, tensorboard=None)
    resume = nl.AutoResume(resume_if_exists=True, resume_ignore_no_checkpoint=True)
    llm.train(
        model=llm.GPTModel(config, tokenizer=tokenizer),
        data=data,
        trainer=trainer,
        log=log,
        optim=optimizer,
        resume=resume,
    )


if __name__ == "__main__":
    main()
