"""``MegatronCoreStrategy``: Lightning DDP over megatron-core's parallel state and dist checkpoints.

What it adds to Lightning's ``DDPStrategy`` (the same jobs as NeMo's ``MegatronStrategy``,
kept small):

- once the process group exists, ``parallel_state.initialize_model_parallel(tp, pp)`` and
  Megatron-LM's per-rank seeding (``rng.seed_rank``), with ``cpu_compat`` applied first
  when CUDA is absent;
- data-parallel wrapping over megatron's data-parallel group (torch DDP: megatron's own DDP
  and optimizer are CUDA-only); with PP > 1 no wrapping (DP=1 only): the module trains
  with manual optimization through megatron's pipeline schedule;
- checkpoints saved and loaded on *every* rank through ``megatron.core.dist_checkpointing``
  (torch_dist, sharded per rank, save work spread over the data-parallel ranks): the
  module's ``sharded_state_dict()``, the optimizer's per-parameter state sharded like its
  parameters (resharded on load when the TP size changed), each pipeline stage's optimizer
  bookkeeping (state names, step counts) and each rank's RNG states as ``ShardedObject``s,
  and the rest of Lightning's checkpoint (loops, schedulers, callbacks, module extras) as
  common state;
- async saves (megatron's ``AsyncCallsQueue``): a save counts as complete only after every
  rank's write and the finalize step, after which rank 0 writes the completeness marker
  (``marker.write_marker``). Saves are finalized at the next batch start when done, and
  always before the sentinel (``finish_pending_saves``), at the last step and at teardown.

The LightningModule must hold the megatron model and define ``sharded_state_dict()``
(for example ``return self.model.sharded_state_dict(prefix="model.")``); it may build the
model in ``configure_model``, which runs after the parallel state is initialized.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_warn
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.dist_checkpointing.mapping import ShardedObject
from megatron.core.dist_checkpointing.optimizer import get_param_id_to_sharded_param_map, optim_state_to_sharding_state
from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
from megatron.core.dist_checkpointing.strategies import filesystem_async
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper
from torch.nn.parallel import DistributedDataParallel

from workers.backends.megatron import cpu_compat, marker
from workers.backends.megatron.rng import capture_rng_states, restore_rng_states, seed_rank

log = logging.getLogger(__name__)

#: Lightning checkpoint keys replaced by sharded state (everything else is common state).
SHARDED_KEYS = ("state_dict", "optimizer_states")

#: Optimizer state entries kept out of the sharded tensors: per-parameter scalars (Adam's
#: ``step``) have no parameter shape to shard by; they go to the per-stage state.
SCALAR_STATE_KEYS = ("step",)

#: The key of each pipeline stage's own optimizer bookkeeping (``stage_sharded_object``).
STAGE_KEY = "pipeline_stage_state"

#: ``hook(strategy, directory, step)``, called on every rank around each save.
SaveHook = Callable[["MegatronCoreStrategy", Path, int], None]


class MegatronCoreStrategy(DDPStrategy):
    """DDP over megatron-core's model-parallel state, checkpointing with ``dist_checkpointing``.

    Args:
        tensor_model_parallel_size: TP size (any size on CPU/gloo too; a checkpoint of another
            TP size is resharded on load, its RNG states left out).
        pipeline_model_parallel_size: PP size; with PP > 1 the module must use manual
            optimization and run megatron's pipeline schedule itself (DP=1 only).
        seed: the base seed; each rank is seeded with ``rng.rank_seed(seed)``.
        async_save: write checkpoints with megatron's async writer (finalized later).
        kwargs: passed to ``DDPStrategy``.
    """

    strategy_name = "megatron_core"

    def __init__(
        self,
        tensor_model_parallel_size: int = 1,
        pipeline_model_parallel_size: int = 1,
        seed: int = 1234,
        async_save: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tensor_model_parallel_size = tensor_model_parallel_size
        self.pipeline_model_parallel_size = pipeline_model_parallel_size
        self.seed = seed
        self.async_save = async_save
        self.async_queue: AsyncCallsQueue | None = None
        # Called on every rank before a save starts, and after it is scheduled but before it
        # can be finalized (``--kill-during-save`` is killed there while the writer writes).
        self.before_save_hooks: list[SaveHook] = []
        self.after_save_hooks: list[SaveHook] = []
        self.saves_started = 0
        self._aborting = False

    # -- setup ------------------------------------------------------------------------------

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        # The sharded load needs the built model and optimizer as its template.
        return True

    def setup_environment(self) -> None:
        super().setup_environment()  # creates the process group
        cpu_compat.apply()  # no-op where CUDA is present
        if self.pipeline_model_parallel_size != 1:
            self._check_pipeline_module()
        if not parallel_state.model_parallel_is_initialized():
            parallel_state.initialize_model_parallel(
                tensor_model_parallel_size=self.tensor_model_parallel_size,
                pipeline_model_parallel_size=self.pipeline_model_parallel_size,
            )
        if self.pipeline_model_parallel_size != 1 and parallel_state.get_data_parallel_world_size() != 1:
            raise NotImplementedError(
                f"pipeline_model_parallel_size={self.pipeline_model_parallel_size} with data parallelism "
                f"({parallel_state.get_data_parallel_world_size()} replicas): the pipeline path has no "
                "gradient reduction over data-parallel replicas yet; run PP with DP=1"
            )
        seed_rank(self.seed)

    def _check_pipeline_module(self) -> None:
        # A pipeline is driven by megatron's forward/backward schedule, which runs forward
        # and backward itself: Lightning's automatic optimization cannot drive it.
        module = self.lightning_module
        if module is not None and module.automatic_optimization:
            raise NotImplementedError(
                f"pipeline_model_parallel_size={self.pipeline_model_parallel_size}: "
                f"{type(module).__name__} uses Lightning's automatic optimization, which cannot drive a "
                "pipeline; set automatic_optimization = False and run megatron's get_forward_backward_func() "
                "in training_step (see harness_specs/megatron_gpt_tiny.py)"
            )

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.pipeline_model_parallel_size != 1:
            # DP=1 (checked above): no replica to reduce with; the schedule runs backward.
            return model
        # Gradients are averaged over data-parallel replicas only; TP ranks reduce their own.
        kwargs = {**self._ddp_kwargs, "process_group": parallel_state.get_data_parallel_group()}
        device_ids = self.determine_ddp_device_ids()
        return DistributedDataParallel(module=model, device_ids=device_ids, **kwargs)

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        return {
            "num_replicas": parallel_state.get_data_parallel_world_size(),
            "rank": parallel_state.get_data_parallel_rank(),
        }

    # -- sharded state ----------------------------------------------------------------------

    def module_sharded_state_dict(self) -> dict[str, Any]:
        """The LightningModule's sharded state dict (its ``sharded_state_dict()``)."""
        module = self.lightning_module
        if not hasattr(module, "sharded_state_dict"):
            raise TypeError(f"{type(module).__name__} must define sharded_state_dict() for MegatronCoreStrategy")
        return module.sharded_state_dict()

    def optimizer_sharded_state(
        self, model_sharded: dict[str, Any], optimizer: torch.optim.Optimizer, state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An optimizer state dict with its per-parameter tensors sharded like their parameters.

        ``state`` defaults to the optimizer's own. Scalars such as Adam's ``step`` go to
        ``scalar_state`` (per-stage state: ``with_stage_state``); the tensors become
        ``ShardedTensor``s keyed
        ``optimizer.state.<name>.<parameter key>``.
        """
        state = optimizer.state_dict() if state is None else state
        scalars = {
            param_id: {key: value for key, value in per_param.items() if key in SCALAR_STATE_KEYS}
            for param_id, per_param in state["state"].items()
        }
        params = [p for group in optimizer.param_groups for p in group["params"]]
        id_map = get_param_id_to_sharded_param_map(model_sharded, params)
        optim_state_to_sharding_state(state, id_map, exclude_keys=SCALAR_STATE_KEYS)
        state["scalar_state"] = scalars
        return state

    def optimizer_template(self, optimizer: torch.optim.Optimizer, state_keys: dict[int, list[str]]) -> dict[str, Any]:
        """A state dict shaped like the saved one, to load into: zeros for every saved tensor."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state = optimizer.state_dict()
        state["state"] = {
            param_id: {key: torch.zeros_like(params[param_id]) for key in keys} for param_id, keys in state_keys.items()
        }
        return state

    @staticmethod
    def optimizer_state_keys(optimizer: torch.optim.Optimizer) -> dict[int, list[str]]:
        """The names of each parameter's sharded state tensors (``exp_avg``, ...), by parameter id."""
        return {
            param_id: sorted(key for key in per_param if key not in SCALAR_STATE_KEYS)
            for param_id, per_param in optimizer.state_dict()["state"].items()
        }

    def rng_sharded_object(self) -> ShardedObject:
        """This rank's RNG states as a ``ShardedObject`` of its own (one shard per rank)."""
        shape = (
            parallel_state.get_pipeline_model_parallel_world_size(),
            parallel_state.get_tensor_model_parallel_world_size(),
            parallel_state.get_data_parallel_world_size(),
        )
        offset = (
            parallel_state.get_pipeline_model_parallel_rank(),
            parallel_state.get_tensor_model_parallel_rank(),
            parallel_state.get_data_parallel_rank(),
        )
        return ShardedObject("rng_state", capture_rng_states(), shape, offset, replica_id=0)

    def stage_sharded_object(self, data: Any) -> ShardedObject:
        """This pipeline stage's optimizer bookkeeping as a ``ShardedObject`` (one per stage).

        ``common.pt`` holds rank 0's common state only, but each stage has its own
        parameters, so its own per-parameter step counts and state names (the param
        groups' parameter lists are rebuilt locally at load: megatron marks them
        ``LocalNonpersistentObject``). The TP and DP ranks of a stage hold the same, so only
        their first rank's copy is written (``replica_id``); it loads for any TP or DP size.
        """
        replica = (parallel_state.get_tensor_model_parallel_rank(), parallel_state.get_data_parallel_rank())
        return ShardedObject(
            STAGE_KEY,
            data,
            (parallel_state.get_pipeline_model_parallel_world_size(),),
            (parallel_state.get_pipeline_model_parallel_rank(),),
            replica_id=replica,
        )

    def with_stage_state(self, sharded: dict[str, Any]) -> dict[str, Any]:
        """Moves the per-stage optimizer bookkeeping (state names, step counts) out of the
        common state, into this stage's object."""
        stage = {
            "optimizer_state_keys": sharded.pop("optimizer_state_keys"),
            "scalar_states": [state.pop("scalar_state") for state in sharded["optimizer_states"]],
        }
        sharded[STAGE_KEY] = self.stage_sharded_object(stage)
        return sharded

    def parallel_config(self) -> dict[str, int]:
        """The parallel layout a checkpoint was written with (reshards change it)."""
        return {
            "tp": parallel_state.get_tensor_model_parallel_world_size(),
            "pp": parallel_state.get_pipeline_model_parallel_world_size(),
            "dp": parallel_state.get_data_parallel_world_size(),
        }

    def sharded_checkpoint(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """Lightning's checkpoint dict with model, optimizer and RNG state made sharded."""
        common = {key: value for key, value in checkpoint.items() if key not in SHARDED_KEYS}
        model_sharded = self.module_sharded_state_dict()
        optimizers = [self.optimizer_sharded_state(model_sharded, opt) for opt in self.optimizers]
        # Per stage: ``save_checkpoint`` moves it, with the step counts, into ``with_stage_state``.
        common["optimizer_state_keys"] = [self.optimizer_state_keys(opt) for opt in self.optimizers]
        common["parallel_config"] = self.parallel_config()
        return {**common, "state_dict": model_sharded, "optimizer_states": optimizers, "rng": self.rng_sharded_object()}

    # -- saving -----------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None) -> None:
        """Saves on every rank into the directory ``filepath`` (async when ``async_save``)."""
        directory = Path(filepath)
        step = int(checkpoint["global_step"])
        self._fork_write_results_queue()
        for hook in self.before_save_hooks:
            hook(self, directory, step)
        self._prepare_directory(directory)
        sharded = self.with_stage_state(self.sharded_checkpoint(checkpoint))
        strategy = FullyParallelSaveStrategyWrapper(
            get_default_save_sharded_strategy(), parallel_state.get_data_parallel_group(with_context_parallel=True)
        )
        request = dist_checkpointing.save(sharded, str(directory), sharded_strategy=strategy, async_sharded_save=True)
        assert request is not None
        request.add_finalize_fn(lambda: self._write_marker(directory, step))
        self.saves_started += 1
        if self.async_save:
            self._queue().schedule_async_request(request)
        else:
            request.execute_sync()
        for hook in self.after_save_hooks:
            hook(self, directory, step)
        if self._at_last_step():
            # Nothing is left to overlap with; and a rank failing its end-of-training checks
            # must not leave the others waiting in a finalize collective at teardown.
            self.finish_pending_saves(blocking=True)

    def _at_last_step(self) -> bool:
        trainer = self.lightning_module.trainer
        return trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps

    def _prepare_directory(self, directory: Path) -> None:
        # An overwritten checkpoint (``last``) stops counting as complete before any byte of
        # the new one is written: the marker goes first, then the old files.
        if self.is_global_zero and directory.exists():
            marker.remove_marker(directory)
            shutil.rmtree(directory)
        self.barrier("megatron_core_prepare_checkpoint_dir")
        directory.mkdir(parents=True, exist_ok=True)

    def _write_marker(self, directory: Path, step: int) -> None:
        # A finalize function: runs on every rank once all ranks' writes are done and after
        # dist_checkpointing's own finalize (``.metadata``, ``metadata.json``).
        if self.is_global_zero:
            marker.write_marker(directory, step, {"world_size": self.world_size, **self.parallel_config()})
        torch.distributed.barrier()

    def _queue(self) -> AsyncCallsQueue:
        if self.async_queue is None:
            self.async_queue = AsyncCallsQueue(persistent=False)
        return self.async_queue

    @staticmethod
    def _fork_write_results_queue() -> None:
        # The torch_dist writer reports through a multiprocessing Manager queue that it
        # starts with "spawn", which re-imports the worker's __main__ (Lightning and all:
        # ~9 s of CPU per rank per phase on a 2-core machine). Without CUDA there is nothing
        # that spawn protects, so start the same Manager by fork instead, before the first save.
        if torch.cuda.is_available() or filesystem_async._results_queue is not None:
            return
        filesystem_async._results_queue = multiprocessing.get_context("fork").Manager().Queue()

    def finish_pending_saves(self, blocking: bool = True) -> None:
        """Finalizes the async saves (every rank must call it); ``blocking`` waits for all."""
        if self.async_queue is not None and self.async_queue.get_num_unfinalized_calls() > 0:
            self.async_queue.maybe_finalize_async_calls(blocking=blocking)

    def pending_saves(self) -> int:
        """Saves scheduled but not finalized yet."""
        return 0 if self.async_queue is None else self.async_queue.get_num_unfinalized_calls()

    def on_train_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Every rank reaches each batch start together: finalize the saves already written.
        self.finish_pending_saves(blocking=False)

    def remove_checkpoint(self, filepath: Any) -> None:
        if self.is_global_zero:
            directory = Path(filepath)
            if directory.exists():
                marker.remove_marker(directory)
                shutil.rmtree(directory)

    # -- loading ----------------------------------------------------------------------------

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Loads the sharded checkpoint directory on every rank, this rank's RNG states included."""
        directory = Path(checkpoint_path)
        common = dist_checkpointing.load_common_state_dict(str(directory))
        resharded = common.get("parallel_config", {}).get("tp") != parallel_state.get_tensor_model_parallel_world_size()
        # This stage's optimizer bookkeeping first: the template needs its state names.
        stage = dist_checkpointing.load({STAGE_KEY: self.stage_sharded_object(None)}, str(directory))[STAGE_KEY]
        model_sharded = self.module_sharded_state_dict()
        template: dict[str, Any] = {
            "state_dict": model_sharded,
            "optimizer_states": [
                self.optimizer_sharded_state(model_sharded, opt, self.optimizer_template(opt, dict(keys)))
                for opt, keys in zip(self.optimizers, stage["optimizer_state_keys"], strict=False)
            ],
        }
        if resharded:
            # Per-rank RNG streams do not map onto another TP layout (Megatron-LM skips them too).
            rank_zero_warn(f"stop-and-go: {directory} was saved with {common['parallel_config']}; RNG not restored")
        else:
            template["rng"] = self.rng_sharded_object()
        loaded = dist_checkpointing.load(template, str(directory))
        for optimizer_state, scalar_state in zip(loaded["optimizer_states"], stage["scalar_states"], strict=True):
            for param_id, scalars in scalar_state.items():
                optimizer_state["state"].setdefault(param_id, {}).update(scalars)
        if "rng" in loaded:
            restore_rng_states(loaded.pop("rng"))
        return loaded

    def load_model_state_dict(self, checkpoint: Any, strict: bool = True) -> None:
        self.lightning_module.load_state_dict(checkpoint["state_dict"], strict=strict)

    # -- teardown ---------------------------------------------------------------------------

    def on_exception(self, exception: BaseException) -> None:
        super().on_exception(exception)
        # Other ranks may not reach another collective: never finalize after a failure.
        self._aborting = True

    def teardown(self) -> None:
        if self.async_queue is not None:
            if self._aborting:
                self.async_queue.close(abort=True)
            else:
                self.async_queue.maybe_finalize_async_calls(blocking=True)
                self.async_queue.close()
            self.async_queue = None
        super().teardown()


def megatron_strategy(trainer: pl.Trainer) -> MegatronCoreStrategy:
    """The trainer's ``MegatronCoreStrategy``; a clear error for any other strategy."""
    strategy = trainer.strategy
    if not isinstance(strategy, MegatronCoreStrategy):
        raise TypeError(f"the megatron backend needs MegatronCoreStrategy, got {type(strategy).__name__}")
    return strategy
