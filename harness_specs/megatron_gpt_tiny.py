"""A tiny megatron-core GPT under the ``megatron`` backend: dist_checkpointing, async saves, per-rank RNG.

Needs the ``megatron`` extra (``pip install -e '.[megatron]'``). What it exercises:

- a megatron-core ``GPTModel`` built from ``get_gpt_layer_local_spec()`` (2 layers, hidden
  32, 4 heads, vocab 128, sequence 16), created in ``configure_model`` once
  ``MegatronCoreStrategy`` has initialized megatron's parallel state;
- TP=1, PP=1, DP=2 on CPU/gloo by default; ``STOP_AND_GO_MEGATRON_TP=2`` runs TP=2, DP=1
  (gloo too), and ``STOP_AND_GO_MEGATRON_GO_TP`` sets another TP size for the resumed
  phases (resharding on resume: see ``megatron_gpt_reshard.py``, which holds the global
  batch constant across it); ``STOP_AND_GO_MEGATRON_PP=2`` runs a 2-stage pipeline (DP=1):
  manual optimization through megatron's pipeline schedule over gloo point-to-point;
- the full (TP-gathered) weights and optimizer state as metrics too (``full_state``), the
  same for any TP size; each TP rank's and PP stage's batch is checked to be its
  replica's, and the sample ledger counts a replica's samples once (on its first TP rank
  of the first stage);
- checkpoints through ``megatron.core.dist_checkpointing`` (torch_dist, every rank writes
  its shard, async writer on), each complete only once finalized and marked;
- deterministic synthetic token data, sharded over data-parallel ranks by a resumable
  sampler (consumed samples saved in the checkpoint), 8 steps per epoch, 12 steps in all;
- Adam, linear warmup then cosine decay stepped every optimizer step;
- hidden and attention dropout on; each rank has its own streams (Megatron-LM's
  ``data_parallel_random_init`` seeding), and the attention dropout draws from megatron's
  RNG tracker, whose states are checked per rank (``megatron_rng_tracker``);
- validation every 2 steps, on a slice of the val set derived from the restored step.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from megatron.core import parallel_state
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.transformer.transformer_config import TransformerConfig
from torch.utils.data import DataLoader, Dataset

from harness_specs.tiny_lightning import VAL_SAMPLES_PER_CHECK, warmup_cosine
from workers import Mode, StopAndGoHarness, torchrun_trainer_kwargs
from workers.backends.megatron import MegatronBackend, MegatronCoreStrategy, get_rng_tracker_digest
from workers.backends.megatron.full_state import FULL_STATE_SCOPES, SHARD_LOCAL_METRICS, full_state_metrics
from workers.kit import ResumableSampler, RotatingValSampler

SEED = 1234
VOCAB = 128
SEQ_LEN = 16
LAYERS = 2
HIDDEN = 32
HEADS = 4
DROPOUT = 0.1
TRAIN_SAMPLES = 64
VAL_SAMPLES = 16
BATCH_SIZE = 4  # per data-parallel rank
MAX_STEPS = 12
BASE_LR = 0.01
ENV_TP = "STOP_AND_GO_MEGATRON_TP"
ENV_GO_TP = "STOP_AND_GO_MEGATRON_GO_TP"
ENV_PP = "STOP_AND_GO_MEGATRON_PP"


class SyntheticTokens(Dataset):
    """Sequences of a noisy affine recurrence over the vocabulary; item ``i`` is fixed."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        first = torch.randint(0, VOCAB, (size, 1), generator=generator)
        steps = [first]
        for _ in range(SEQ_LEN):
            steps.append((steps[-1] * 5 + 3) % VOCAB)
        tokens = torch.cat(steps, dim=1)
        noise = torch.rand(tokens.shape, generator=generator) < 0.1
        self.tokens = torch.where(noise, torch.randint(0, VOCAB, tokens.shape, generator=generator), tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sequence = self.tokens[index]
        return {"idx": index, "tokens": sequence[:-1], "labels": sequence[1:]}


def causal_mask(batch: int) -> torch.Tensor:
    """Megatron's boolean attention mask (True = masked), causal, ``[b, 1, s, s]``."""
    return torch.triu(torch.ones(SEQ_LEN, SEQ_LEN, dtype=torch.bool), diagonal=1).expand(batch, 1, -1, -1)


class TinyGPTModule(pl.LightningModule):
    """A megatron-core GPT; the strategy checkpoints it through ``sharded_state_dict()``.

    With PP > 1 each rank builds its stage of the model, and ``training_step`` runs
    megatron's pipeline schedule (``get_forward_backward_func()``: forward, point-to-point
    activations, backward) under manual optimization, then steps the optimizer and the
    scheduler; the loss lives on the last stage and is broadcast to every stage.
    """

    dropout = DROPOUT

    def __init__(self, tensor_model_parallel_size: int = 1, pipeline_model_parallel_size: int = 1) -> None:
        super().__init__()
        self.tensor_model_parallel_size = tensor_model_parallel_size
        self.pipeline_model_parallel_size = pipeline_model_parallel_size
        # Lightning's automatic optimization cannot drive a pipeline schedule.
        self.automatic_optimization = pipeline_model_parallel_size == 1
        self.model: GPTModel | None = None
        self.consumed_samples = 0

    def configure_model(self) -> None:
        if self.model is not None:
            return
        config = TransformerConfig(
            num_layers=LAYERS,
            hidden_size=HIDDEN,
            num_attention_heads=HEADS,
            tensor_model_parallel_size=self.tensor_model_parallel_size,
            pipeline_model_parallel_size=self.pipeline_model_parallel_size,
            pipeline_dtype=torch.float32,  # the dtype of the activations sent between stages
            use_cpu_initialization=True,  # the same weights on every device kind and TP size
            hidden_dropout=self.dropout,
            attention_dropout=self.dropout,
        )
        self.model = GPTModel(
            config,
            get_gpt_layer_local_spec(),
            vocab_size=VOCAB,
            max_sequence_length=SEQ_LEN,
            pre_process=parallel_state.is_pipeline_first_stage(),
            post_process=parallel_state.is_pipeline_last_stage(),
        )

    def sharded_state_dict(self) -> dict[str, Any]:
        assert self.model is not None
        return self.model.sharded_state_dict(prefix="model.")

    def forward_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """This stage's output: per-token losses on the last stage, hidden states before it
        (a later stage takes its input from the schedule's ``set_input_tensor``)."""
        assert self.model is not None
        tokens = batch["tokens"]
        positions = torch.arange(SEQ_LEN, device=tokens.device).expand_as(tokens)
        mask = causal_mask(len(tokens)).to(tokens.device)
        return self.model(tokens, positions, mask, labels=batch["labels"])

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_batch(batch).float().mean()

    def pipeline_loss(self, batch: dict[str, torch.Tensor], forward_only: bool) -> torch.Tensor:
        """The batch's loss through megatron's pipeline schedule (one micro-batch), on every stage.

        Without ``forward_only`` the schedule also runs backward, so the gradients are ready.
        """

        def forward_step(data_iterator: Any, model: GPTModel) -> tuple[torch.Tensor, Any]:
            output = self.forward_batch(next(data_iterator))

            def loss_func(output_tensor: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
                loss = output_tensor.float().mean()
                return loss, {"loss": loss.detach()}

            return output, loss_func

        assert self.model is not None
        losses = get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=iter([batch]),
            model=[self.model],
            num_microbatches=1,
            seq_length=SEQ_LEN,
            micro_batch_size=len(batch["idx"]),
            forward_only=forward_only,
        )
        last = parallel_state.is_pipeline_last_stage()
        loss = losses[0]["loss"].clone() if last else torch.zeros((), device=self.device)
        torch.distributed.broadcast(
            loss,
            src=parallel_state.get_pipeline_model_parallel_last_rank(),
            group=parallel_state.get_pipeline_model_parallel_group(),
        )
        return loss

    def batch_sample_ids(self, batch: dict[str, torch.Tensor]) -> list[int]:
        """The ledger's ids: a data-parallel replica's samples, counted once, on its first
        model-parallel rank (its other TP ranks and PP stages train the same samples)."""
        first = parallel_state.get_tensor_model_parallel_rank() == 0 and parallel_state.is_pipeline_first_stage()
        return batch["idx"].tolist() if first else []

    def check_same_batch_on_model_parallel_ranks(self, batch: dict[str, torch.Tensor]) -> None:
        """Raises unless every TP rank and PP stage of this replica got the same samples."""
        group = parallel_state.get_model_parallel_group()
        world = torch.distributed.get_world_size(group)
        if world == 1:
            return
        ids = batch["idx"].detach().contiguous()  # on the device: NCCL gathers no CPU tensors
        gathered = [torch.empty_like(ids) for _ in range(world)]
        torch.distributed.all_gather(gathered, ids, group=group)
        if any(not torch.equal(ids, other) for other in gathered):
            raise RuntimeError(f"the model-parallel ranks of one replica got different batches: {gathered}")

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.check_same_batch_on_model_parallel_ranks(batch)
        self.consumed_samples += len(batch["idx"]) * parallel_state.get_data_parallel_world_size()
        if self.automatic_optimization:
            return self.loss(batch)
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        optimizer.zero_grad()
        loss = self.pipeline_loss(batch, forward_only=False)  # forward and backward
        optimizer.step()
        scheduler.step()
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self.loss(batch) if self.automatic_optimization else self.pipeline_loss(batch, forward_only=True)
        self.log("val_loss", loss, sync_dist=True)

    def validation_position(self) -> int:
        """How many validations came before this one (from the restored global step)."""
        return max(0, self.trainer.global_step // max(1, int(self.trainer.val_check_batch)) - 1)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=BASE_LR)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["consumed_samples"] = self.consumed_samples  # common state: equal on every rank

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.consumed_samples = checkpoint["consumed_samples"]


class TinyTokenDataModule(pl.LightningDataModule):
    """Train and validation loaders over data-parallel ranks; the train sampler resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.train_set = SyntheticTokens(TRAIN_SAMPLES, seed=SEED)
        self.val_set = SyntheticTokens(VAL_SAMPLES, seed=SEED + 1)

    def train_sampler(self, consumed: int) -> ResumableSampler:
        return ResumableSampler(
            self.train_set,
            consumed_samples=consumed,
            num_replicas=parallel_state.get_data_parallel_world_size(),
            rank=parallel_state.get_data_parallel_rank(),
            shuffle=True,
            seed=SEED,
            drop_last=True,
        )

    def train_dataloader(self) -> DataLoader:
        # Called after the checkpoint is restored, so the module's count is the resumed one.
        sampler = self.train_sampler(self.trainer.lightning_module.consumed_samples)
        generator = torch.Generator().manual_seed(SEED)
        return DataLoader(self.train_set, batch_size=BATCH_SIZE, sampler=sampler, drop_last=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        sampler = RotatingValSampler(
            len(self.val_set),
            VAL_SAMPLES_PER_CHECK,
            self.trainer.lightning_module.validation_position,
            num_replicas=parallel_state.get_data_parallel_world_size(),
            rank=parallel_state.get_data_parallel_rank(),
        )
        generator = torch.Generator().manual_seed(SEED)
        return DataLoader(self.val_set, batch_size=BATCH_SIZE, sampler=sampler, generator=generator)


def get_consumed_samples(trainer: pl.Trainer, module: pl.LightningModule) -> int:
    """Samples consumed by training so far, over all data-parallel ranks."""
    return int(module.consumed_samples)


class MegatronGPTTinyHarness(StopAndGoHarness):
    """Stop at step 2, resume from the sharded checkpoint, finish 12 steps on 2 ranks."""

    backend = MegatronBackend()
    strategy_class: type[MegatronCoreStrategy] = MegatronCoreStrategy
    module_class: type[TinyGPTModule] = TinyGPTModule
    datamodule_class: type[TinyTokenDataModule] = TinyTokenDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", val_check_interval: int = 2, **kwargs: Any) -> None:
        extra = {
            "consumed_samples": get_consumed_samples,
            "megatron_rng_tracker": get_rng_tracker_digest,
            **full_state_metrics(),
        }
        extra.update(kwargs.pop("extra_metrics_dict", None) or {})
        kwargs.setdefault("exp_name", "megatron_gpt_tiny")
        super().__init__(root_dir, val_check_interval, extra_metrics_dict=extra, **kwargs)
        # Used when the world size changes (``--go-nproc-per-node``, in specs that allow it).
        self.metric_scopes.update({"consumed_samples": "global", **FULL_STATE_SCOPES})
        if self.tensor_model_parallel_size(Mode.STOP) != self.tensor_model_parallel_size(Mode.RESUME):
            # A rank's built-in weight/optimizer metrics see its own shards, which a change
            # of TP size changes; the full_* metrics compare the whole state instead.
            self.metric_scopes.update(dict.fromkeys(SHARD_LOCAL_METRICS, "per_rank"))

    def pipeline_model_parallel_size(self) -> int:
        """PP: ``STOP_AND_GO_MEGATRON_PP`` (1); the same in every phase."""
        return int(os.environ.get(ENV_PP, "1"))

    def tensor_model_parallel_size(self, mode: Mode) -> int:
        """TP for ``mode``: ``STOP_AND_GO_MEGATRON_TP`` (1), resumed phases may override it."""
        tp = int(os.environ.get(ENV_TP, "1"))
        if mode is Mode.RESUME:
            tp = int(os.environ.get(ENV_GO_TP, str(tp)))
        return tp

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, None]:
        pl.seed_everything(SEED, verbose=False)
        module = self.module_class(self.tensor_model_parallel_size(mode), self.pipeline_model_parallel_size())
        return module, self.datamodule_class(), None

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        launch = torchrun_trainer_kwargs()
        pipeline = self.pipeline_model_parallel_size()
        launch["strategy"] = self.strategy_class(
            tensor_model_parallel_size=self.tensor_model_parallel_size(mode),
            pipeline_model_parallel_size=pipeline,
            seed=SEED,
            async_save=True,
        )
        return pl.Trainer(
            default_root_dir=self.root_dir,
            max_steps=MAX_STEPS,
            val_check_interval=self.val_check_interval,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            deterministic=True,
            # The pipeline's receive buffers require grad, which inference mode forbids.
            inference_mode=pipeline == 1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=self.get_callbacks(mode),
            **launch,
        )
