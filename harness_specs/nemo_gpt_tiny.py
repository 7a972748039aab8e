"""The NeMo 2 spec: the seed's own training path on a tiny GPT (``nemo2`` backend).

Run it in the NeMo venv (``bash scripts/setup_nemo_venv.sh``) on a GPU machine:

    .venv-nemo/bin/python -m orchestrator harness_specs/nemo_gpt_tiny.py --run-dir /tmp/nemo

What it exercises, as a BioNeMo stop-and-go test does:

- ``llm.train`` with ``NeMoLogger`` and ``AutoResume`` (``resume_if_exists=False`` in stop
  and continuous, ``True`` in go), through ``workers.backends.nemo2.NeMo2Backend``;
- a tiny ``llm.GPTConfig`` (2 layers, hidden 64, 4 heads, sequence 32) with a
  ``NullTokenizer`` of 250 tokens, so nothing is downloaded;
- ``llm.MockDataModule``: deterministic random tokens, sampled by NeMo's
  ``MegatronDataSampler``, which resumes from the consumed samples;
- ``nl.MegatronStrategy`` (TP=1, PP=1, data parallel over the torchrun ranks) and
  ``nl.MegatronOptimizerModule`` (megatron-core Adam, cosine schedule with warmup);
- NeMo's ``ModelCheckpoint`` configured as the seed's (``workers.backends.nemo2``): a
  ``-last`` directory with ``weights/`` (``dist_checkpointing``) and ``context/``;
- validation and a checkpoint every 2 steps, 10 steps in all.

``MegatronStrategy`` is CUDA-only: on a machine without a GPU the spec still loads (the
tests check that), but training stops at the strategy's setup (see ``tests/test_nemo2.py``).
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from megatron.core.optimizer import OptimizerConfig
from nemo import lightning as nl
from nemo.collections import llm
from nemo.collections.common.tokenizers.null_tokenizer import NullTokenizer
from nemo.lightning.io import track_io
from nemo.lightning.pytorch.optim import CosineAnnealingScheduler

from workers import Mode
from workers.backends.nemo2 import NeMo2StopAndGoHarness

# NeMo serializes the model, tokenizer included, into each checkpoint's context/; the
# NullTokenizer is not serializable until NeMo tracks its constructor arguments. Without
# this, NeMo only warns and writes no context/, and the backend rejects the checkpoint.
track_io(NullTokenizer)

SEED = 1234
VOCAB_SIZE = 250  # NullTokenizer adds one (end of document): 251, padded by GPTConfig
SEQ_LENGTH = 32
MICRO_BATCH_SIZE = 2
MAX_STEPS = 10
WARMUP_STEPS = 3
BASE_LR = 1e-3
VAL_BATCHES = 2


def world_size() -> int:
    """The number of ranks torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def tiny_gpt_config() -> llm.GPTConfig:
    """A 2-layer GPT small enough to train in seconds; fp32 for a bit-exact comparison."""
    return llm.GPTConfig(
        num_layers=2,
        hidden_size=64,
        ffn_hidden_size=128,
        num_attention_heads=4,
        seq_length=SEQ_LENGTH,
        init_method_std=0.02,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        make_vocab_size_divisible_by=128,
        share_embeddings_and_output_weights=True,
        bf16=False,
        params_dtype=torch.float32,
        # Deterministic kernels, so go and the continuous run can be compared step by step.
        deterministic_mode=True,
        # megatron-core allocates weights on the current CUDA device unless told otherwise;
        # on a CPU-only machine this gets the seed's path one step further (to the strategy).
        use_cpu_initialization=not torch.cuda.is_available(),
    )


class NeMoGPTTinyHarness(NeMo2StopAndGoHarness):
    """The seed's harness shape: ``setup_model`` and ``setup_trainer_and_strategy`` only."""

    def __init__(self, root_dir: Any = "./stop_and_go", val_check_interval: int = 2, **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "nemo_gpt_tiny")
        super().__init__(root_dir, val_check_interval, **kwargs)

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, nl.MegatronOptimizerModule]:
        pl.seed_everything(SEED, verbose=False)
        tokenizer = NullTokenizer(vocab_size=VOCAB_SIZE)
        data = llm.MockDataModule(
            seq_length=SEQ_LENGTH,
            tokenizer=tokenizer,
            micro_batch_size=MICRO_BATCH_SIZE,
            global_batch_size=MICRO_BATCH_SIZE * world_size(),
            num_train_samples=MAX_STEPS * MICRO_BATCH_SIZE * world_size() * 4,
            num_val_samples=VAL_BATCHES * MICRO_BATCH_SIZE * world_size() * 8,
            num_workers=0,
            pin_memory=False,
        )
        model = llm.GPTModel(tiny_gpt_config(), tokenizer=tokenizer)
        optimizer = nl.MegatronOptimizerModule(
            config=OptimizerConfig(
                optimizer="adam",
                lr=BASE_LR,
                weight_decay=0.01,
                adam_beta1=0.9,
                adam_beta2=0.95,
                clip_grad=1.0,
                use_distributed_optimizer=False,
                bf16=False,
                fp16=False,
            ),
            lr_scheduler=CosineAnnealingScheduler(warmup_steps=WARMUP_STEPS, max_steps=MAX_STEPS, min_lr=BASE_LR / 10),
        )
        return model, data, optimizer

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        strategy = nl.MegatronStrategy(
            tensor_model_parallel_size=1,
            pipeline_model_parallel_size=1,
            ddp="megatron",
            # A synchronous save: the checkpoint is whole (and NeMo's "-unfinished" marker
            # gone) before the stop run's sentinel names it.
            ckpt_async_save=False,
        )
        return nl.Trainer(
            # MegatronStrategy needs CUDA; on CPU this gets as far as NeMo allows (tests/test_nemo2.py).
            accelerator="gpu" if torch.cuda.is_available() else "cpu",
            devices=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
            num_nodes=max(1, world_size() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))),
            strategy=strategy,
            max_steps=MAX_STEPS,
            val_check_interval=self.val_check_interval,
            limit_val_batches=VAL_BATCHES,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
            callbacks=self.get_callbacks(mode),
        )
