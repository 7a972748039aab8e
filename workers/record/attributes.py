"""Numeric Python attributes of the user's modules: state no ``state_dict`` carries.

A counter kept as ``self.updates += 1`` (an EMA's update count, a schedule ramp, a
validation counter) drives training but lives in no checkpoint: a resumed process starts
it over. ``module_attributes`` reads the public ``int``/``float``/``bool`` attributes of
every user-defined module (submodules included, by their dotted path) and data module,
leaving out those a fresh library base class sets itself (``training``,
``prepare_data_per_node`` ...). Recorded with the checkpoint and at the resume point as
evidence for the diagnosis (``module_attributes``), never a failure by itself: an
attribute that differs may be harmless (a timer, a log counter).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

LIBRARY_PREFIXES = ("torch", "lightning", "pytorch_lightning", "torchdata", "megatron", "nemo", "transformers")


def _is_library(cls: type) -> bool:
    return cls.__module__.startswith(LIBRARY_PREFIXES) or cls is object


# Library bases whose fresh instance is cheap and harmless to build (no arguments, no side
# effects): what they set themselves is not the user's. Other bases are never instantiated.
SAFE_BASES = frozenset(
    {
        "torch.nn.modules.module.Module",
        "lightning.pytorch.core.module.LightningModule",
        "lightning.pytorch.core.datamodule.LightningDataModule",
        "pytorch_lightning.core.module.LightningModule",
        "pytorch_lightning.core.datamodule.LightningDataModule",
    }
)


@functools.lru_cache(maxsize=64)
def _library_names(cls: type) -> frozenset[str]:
    """The attributes a fresh instance of the nearest safe library base of ``cls`` sets itself."""
    for base in cls.__mro__:
        if f"{base.__module__}.{base.__qualname__}" in SAFE_BASES:
            try:
                return frozenset(vars(base()))
            except Exception:  # noqa: BLE001 - keep every public name rather than fail a metric
                return frozenset()
    return frozenset()


def _own_numbers(obj: Any) -> dict[str, int | float | bool]:
    if _is_library(type(obj)):
        return {}
    skip = _library_names(type(obj))
    return {
        name: value
        for name, value in vars(obj).items()
        if not name.startswith("_") and name not in skip and isinstance(value, (bool, int, float))
    }


def module_attributes(modules: Iterable[Any], datamodule: Any = None) -> dict[str, int | float | bool]:
    """``{"path.attr": value}`` of the numeric attributes of ``modules`` (and ``datamodule``)."""
    found: dict[str, int | float | bool] = {}
    for module in modules:
        named = module.named_modules() if hasattr(module, "named_modules") else [("", module)]
        for path, sub in named:
            for name, value in _own_numbers(sub).items():
                found.setdefault(f"{path}.{name}" if path else name, value)
    if datamodule is not None:
        found.update({f"datamodule.{name}": value for name, value in _own_numbers(datamodule).items()})
    return found
