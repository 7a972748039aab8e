"""The doctor's checks: each looks at a built (not trained) setup and names what will not resume.

A check is ``fn(setup) -> list[Finding]``. They read the objects the spec builds (the
train and validation loaders, their samplers, the model's layers, the trainer's
callbacks and the optimizer configuration) and, for state kept outside any
``state_dict``, the source of the module's, data module's and callbacks' own classes: an attribute
assigned (``self.x = ...``, ``self.x += ...``) in a method that runs during training is
state a resume loses, unless the class mentions it where it saves state
(``on_save_checkpoint`` / ``state_dict``) or it is a buffer, parameter or submodule.
Static inspection, not a trial run: nothing trains, so a large model costs nothing, and a
counter that changes only later in training (at the first epoch end) is found too. One
probe runs: the train set's first item fetched twice (global RNG states put back), which
tells a dataset that draws random numbers per item, whatever its transforms' source.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

KIT = "workers.kit"
# Methods that run again in a resumed process before training, or that restore state:
# what they assign is rebuilt or restored, not lost.
REBUILT_IN = frozenset(
    {
        "__init__",
        "setup",
        "prepare_data",
        "configure_model",
        "configure_sharded_model",
        "configure_callbacks",
        "on_load_checkpoint",
        "load_state_dict",
        "on_fit_start",
        "on_train_start",
        "teardown",
        "on_fit_end",
        "on_train_end",
    }
)
SAVED_IN = ("on_save_checkpoint", "state_dict")
# Libraries whose classes the doctor does not read: their state handling is theirs.
LIBRARY_PREFIXES = ("lightning", "pytorch_lightning", "torch", "torchdata", "workers", "orchestrator")


@dataclass
class Finding:
    """One thing that will not resume: a pattern id, what and why, and the fix."""

    pattern: str
    what: str
    fix: str

    def line(self) -> str:
        """The finding as one printed line."""
        return f"[{self.pattern}] {self.what}\n    fix: {self.fix}"


@dataclass
class Setup:
    """What the spec builds, as the doctor sees it (``workers.doctor.build_setup``)."""

    harness: Any
    trainer: pl.Trainer
    module: pl.LightningModule
    datamodule: Any
    train_loader: Any
    val_loaders: list[Any]
    stop_step: int
    optimizer_config: Any = None  # what configure_optimizers returned, None if not called

    def steps_per_epoch(self) -> int | None:
        """Optimizer steps per epoch, or None when the train loader has no length."""
        try:
            batches = len(self.train_loader)
        except TypeError:
            return None
        return max(1, batches // max(1, int(self.trainer.accumulate_grad_batches)))

    def stops_mid_epoch(self) -> bool:
        """True when the stop step does not fall on an epoch's end."""
        per_epoch = self.steps_per_epoch()
        return per_epoch is not None and self.stop_step % per_epoch != 0


def _sampler(loader: Any) -> Any:
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    return inner if inner is not None else getattr(loader, "sampler", None)


def _is_stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _shuffles(sampler: Any) -> bool:
    if isinstance(sampler, RandomSampler):
        return True
    if isinstance(sampler, DistributedSampler):
        return bool(sampler.shuffle)
    return bool(getattr(sampler, "shuffle", False))


def check_stateful_train_loader(setup: Setup) -> list[Finding]:
    """A shuffling train loader that Lightning cannot save restarts its epoch on resume."""
    loader, sampler = setup.train_loader, _sampler(setup.train_loader)
    if loader is None or _is_stateful(loader) or not _shuffles(sampler):
        return []
    return [
        Finding(
            "train-loader-not-stateful",
            f"the train loader ({type(loader).__name__}, sampler {type(sampler).__name__}) shuffles but has no "
            "state_dict: Lightning cannot save its position, so a resumed run restarts the epoch and trains "
            "its first batches twice",
            f"use {KIT}.ResumableLoader(dataset, batch_size=..., seed=..., num_workers=...) in train_dataloader()",
        )
    ]


def check_sampler_set_epoch(setup: Setup) -> list[Finding]:
    """A custom train sampler without ``set_epoch`` cannot follow the epoch Lightning resumes in."""
    sampler = _sampler(setup.train_loader)
    if sampler is None or isinstance(sampler, (RandomSampler, SequentialSampler)):
        return []
    if callable(getattr(sampler, "set_epoch", None)) or type(sampler).__module__.startswith("torchdata"):
        return []
    return [
        Finding(
            "sampler-without-set-epoch",
            f"the train sampler {type(sampler).__name__} has no set_epoch: its order cannot depend on the epoch "
            "Lightning resumes in, so it either repeats one order every epoch or draws one a resumed run cannot "
            "reproduce",
            f"use {KIT}.ResumableSampler (seed + epoch order, position saved by the loader), or give the sampler "
            "set_epoch(epoch) and derive its order from (seed, epoch) only",
        )
    ]


def check_loader_generators(setup: Setup) -> list[Finding]:
    """A loader without a generator draws its seed from the global torch RNG at every iterator."""
    findings = []
    named = [("train", setup.train_loader)] + [(f"validation #{i}", dl) for i, dl in enumerate(setup.val_loaders)]
    for name, loader in named:
        if loader is None or not hasattr(loader, "generator") or loader.generator is not None:
            continue
        sampler = _sampler(loader)
        global_order = isinstance(sampler, RandomSampler) and sampler.generator is None
        what = "its workers' base seed" + (" and its shuffling order" if global_order else "")
        findings.append(
            Finding(
                "loader-global-rng",
                f"the {name} loader has no generator: every new iterator draws {what} from the global torch RNG, "
                "and a resumed run creates its iterators at other points than a continuous one, so the global "
                "stream (dropout included) shifts",
                "pass generator=torch.Generator().manual_seed(SEED) to the DataLoader, or use "
                f"{KIT}.ResumableLoader (shuffle=False for validation)",
            )
        )
    return findings


def _has_random_layers(module: nn.Module) -> bool:
    dropouts = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return any(isinstance(m, dropouts) and m.p > 0 for m in module.modules())


def check_rng_saved(setup: Setup) -> list[Finding]:
    """Dropout without every rank's RNG state in the checkpoint draws other masks after a resume."""
    from workers.kit.rng import RngStateCallback

    if not _has_random_layers(setup.module):
        return []
    if any(isinstance(cb, RngStateCallback) for cb in setup.trainer.callbacks):
        return []
    if "rng" in _saved_source(type(setup.module)).lower():
        return []  # the module saves some RNG state itself
    return [
        Finding(
            "rng-not-saved",
            "the model has dropout, but no callback saves every rank's RNG state (Lightning saves none, and only "
            "rank 0 writes the checkpoint): a resumed run draws other dropout masks",
            f"add {KIT}.RngStateCallback(seed=SEED) to the Trainer's callbacks",
        )
    ]


def _draws_per_item(dataset: Any) -> bool:
    """True when fetching the same item twice gives other tensors: it draws random numbers.

    A real probe, not a reading of the source: torchvision's random transforms count too.
    The global generators are put back, so the probe leaves no trace.
    """
    from workers.kit.rng import rng_states, set_rng_states
    from workers.record.ledger import batch_hash

    if dataset is None or not hasattr(dataset, "__getitem__"):
        return False
    states = rng_states()
    try:
        return batch_hash(dataset[0]) != batch_hash(dataset[0])
    except Exception:  # noqa: BLE001 - a dataset that cannot be probed here: nothing to say
        return False
    finally:
        set_rng_states(states)


def check_worker_randomness(setup: Setup) -> list[Finding]:
    """Random draws in the train loader's worker processes that no checkpoint saves."""
    from workers.kit.augment import WorkerRngState

    loader = setup.train_loader
    dataset = getattr(loader, "dataset", None)
    if loader is None or int(getattr(loader, "num_workers", 0) or 0) == 0 or isinstance(dataset, WorkerRngState):
        return []
    if not _draws_per_item(dataset):
        return []
    return [
        Finding(
            "worker-rng-not-saved",
            f"the train set ({type(dataset).__name__}) draws random numbers per item (augmentation, noise) in "
            f"{loader.num_workers} loader worker process(es), whose generators no checkpoint saves: after a "
            "mid-epoch resume the workers draw the epoch's first numbers again, for other samples",
            f"wrap it in {KIT}.WorkerRngState(dataset) with a StatefulDataLoader ({KIT}.ResumableLoader), or draw "
            "each sample's augmentation from its own torch.Generator seeded from (seed, epoch, index)",
        )
    ]


def _checkpoints_by_step(callback: ModelCheckpoint) -> bool:
    return bool(getattr(callback, "_every_n_train_steps", 0)) or getattr(callback, "_train_time_interval", None)


def check_checkpoint_cadence(setup: Setup) -> list[Finding]:
    """Only epoch-end checkpoints while the stop falls mid-epoch: the resume falls back an epoch."""
    checkpoints = [cb for cb in setup.trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    if not checkpoints or any(_checkpoints_by_step(cb) for cb in checkpoints) or not setup.stops_mid_epoch():
        return []
    return [
        Finding(
            "epoch-end-checkpoints-only",
            f"checkpoints are saved only at epoch ends ({setup.steps_per_epoch()} steps an epoch), but the run "
            f"stops at step {setup.stop_step}, mid-epoch: the resume restarts from the last epoch end (or from "
            "scratch) and redoes the steps in between",
            "save by step as well: ModelCheckpoint(every_n_train_steps=N, save_last=True), or keep the harness's "
            "checkpoint_callback()",
        )
    ]


def check_epoch_schedulers(setup: Setup) -> list[Finding]:
    """A scheduler stepped per epoch, with a stop mid-epoch."""
    if setup.optimizer_config is None or not setup.stops_mid_epoch():
        return []
    from lightning.pytorch.core.optimizer import _configure_optimizers, _configure_schedulers_automatic_opt

    try:
        _, schedulers, _ = _configure_optimizers(setup.optimizer_config)
        configs = _configure_schedulers_automatic_opt(schedulers, None)
    except Exception:  # noqa: BLE001 - an unusual configuration: nothing to say about it
        return []
    return [
        Finding(
            "epoch-scheduler-mid-epoch-stop",
            f"the LR scheduler {type(cfg.scheduler).__name__} steps per epoch (interval='epoch') while the run "
            f"stops mid-epoch (step {setup.stop_step}): Lightning skips the epoch-end scheduler step of an epoch "
            "it resumed in the middle of, so the schedule lags a step behind a continuous run",
            'step it per optimizer step ("interval": "step", with its periods in steps), or stop on epoch ends',
        )
        for cfg in configs
        if cfg.interval == "epoch"
    ]


def _source(cls: type) -> str:
    try:
        return textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return ""


def _saved_source(cls: type) -> str:
    """The source of the methods of ``cls`` (and its own bases) that save state."""
    parts = []
    for klass in _own_classes(cls):
        for name in SAVED_IN:
            method = klass.__dict__.get(name)
            if method is not None:
                try:
                    parts.append(inspect.getsource(method))
                except (OSError, TypeError):
                    continue
    return "\n".join(parts)


def _own_classes(cls: type) -> list[type]:
    return [k for k in cls.__mro__ if not k.__module__.startswith(LIBRARY_PREFIXES) and k is not object]


def mentions_estimated_stepping_batches(module: pl.LightningModule) -> bool:
    """True when the module's configure_optimizers reads ``trainer.estimated_stepping_batches``."""
    for klass in _own_classes(type(module)):
        method = klass.__dict__.get("configure_optimizers")
        if method is not None and "estimated_stepping_batches" in (inspect.getsource(method) or ""):
            return True
    return False


def check_estimated_stepping_batches(setup: Setup) -> list[Finding]:
    """Lightning issue 20550: ``estimated_stepping_batches`` in configure_optimizers."""
    if not mentions_estimated_stepping_batches(setup.module):
        return []
    return [
        Finding(
            "estimated-stepping-batches",
            "configure_optimizers reads trainer.estimated_stepping_batches: that builds the train loader before "
            "the checkpoint's loop state is loaded, and Lightning then never loads the loader's state "
            "(Lightning issue 20550), so a resumed run restarts its epoch",
            "compute the total steps from your own numbers (max_steps, or epochs x batches per epoch) instead",
        )
    ]


def _is_self_attribute(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"


def _assigned_attributes(cls: type) -> dict[str, str]:
    """Attributes ``self.x`` assigned in methods of ``cls`` that run during training: name -> method."""
    found: dict[str, str] = {}
    tree = ast.parse(_source(cls) or "pass")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name in REBUILT_IN:
            continue
        for sub in ast.walk(node):
            targets: Iterable[ast.expr] = ()
            if isinstance(sub, ast.Assign):
                targets = sub.targets
            elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)):
                targets = [sub.target]
            for target in targets:
                if _is_self_attribute(target):
                    found.setdefault(target.attr, node.name)  # type: ignore[attr-defined]
    return found


def _unsaved_state(obj: Any, kind: str) -> list[Finding]:
    saved = _saved_source(type(obj))
    tensors = set()
    if isinstance(obj, nn.Module):
        tensors = {name.split(".")[0] for name, _ in obj.named_parameters()} | {n for n, _ in obj.named_buffers()}
        tensors |= set(obj._modules)
    findings = []
    for klass in _own_classes(type(obj)):
        for attr, method in _assigned_attributes(klass).items():
            if attr in tensors or attr in saved or attr.startswith("__"):
                continue
            findings.append(
                Finding(
                    "state-outside-state-dict",
                    f"{kind} {type(obj).__name__} sets self.{attr} in {method}(), and no checkpoint carries it: "
                    "a resumed run starts it over",
                    f"keep it in a buffer (self.register_buffer('{attr}', torch.tensor(...))), save it in "
                    "on_save_checkpoint/on_load_checkpoint (a callback: state_dict/load_state_dict), or derive it "
                    f"from the restored trainer (e.g. trainer.global_step; {KIT}.consumed_samples, "
                    f"{KIT}.validations_before)",
                )
            )
    return findings


def check_state_outside_state_dict(setup: Setup) -> list[Finding]:
    """Module, data module and callback attributes changed during training that no checkpoint saves."""
    findings = _unsaved_state(setup.module, "the module")
    if setup.datamodule is not None and not type(setup.datamodule).__module__.startswith(LIBRARY_PREFIXES):
        findings += _unsaved_state(setup.datamodule, "the data module")
    for callback in setup.trainer.callbacks:
        if not type(callback).__module__.startswith(LIBRARY_PREFIXES):
            findings += _unsaved_state(callback, "the callback")
    return findings


CHECKS: tuple[Callable[[Setup], list[Finding]], ...] = (
    check_stateful_train_loader,
    check_sampler_set_epoch,
    check_loader_generators,
    check_rng_saved,
    check_worker_randomness,
    check_checkpoint_cadence,
    check_epoch_schedulers,
    check_estimated_stepping_batches,
    check_state_outside_state_dict,
)
