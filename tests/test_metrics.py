"""The built-in metrics on a real Lightning trainer: every one is on, JSON-ready and sensitive."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from harness_specs.tiny_lightning import TinyLightningHarness
from workers import metrics as m
from workers.record.ledger import batch_hash, batch_sample_ids

EXPECTED = {
    "global_step",
    "learning_rate",
    "learning_rates",
    "optimizer_hparams",
    "lr_scheduler_state",
    "weights_digest",
    "weights_norm",
    "buffers_digest",
    "buffers_norm",
    "optimizer_state_digest",
    "optimizer_state_norm",
    "rng_python",
    "rng_numpy",
    "rng_torch",
    "grad_scaler_scale",
}


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.register_buffer("running", torch.zeros(3))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def train_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=2)


@pytest.fixture(scope="module")
def trained() -> tuple[pl.Trainer, pl.LightningModule]:
    pl.seed_everything(0, verbose=False)
    module = Tiny()
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module)
    return trainer, module


def test_every_builtin_metric_is_on_by_default(tmp_path: Any) -> None:
    names = set(TinyLightningHarness(root_dir=tmp_path).metrics_getter)
    assert names >= EXPECTED
    assert "consumed_samples" in names  # the spec's own extra metric is kept
    assert ("rng_cuda" in names) == torch.cuda.is_available()


def test_values_are_json_ready_and_describe_the_state(trained: tuple[pl.Trainer, pl.LightningModule]) -> None:
    trainer, module = trained
    values = m.collect_metrics(m.builtin_metrics(), trainer, module)
    assert values["global_step"] == 2
    assert values["learning_rates"] == [pytest.approx(0.025)]
    assert values["optimizer_hparams"] == [{"momentum": 0.9, "dampening": 0, "weight_decay": 0}]
    [scheduler] = values["lr_scheduler_state"]
    assert scheduler["last_epoch"] == 2 and scheduler["step_size"] == 1
    assert values["weights_norm"] == pytest.approx(float(torch.cat([p.flatten() for p in module.parameters()]).norm()))
    assert values["buffers_norm"] == 0.0
    assert values["optimizer_state_norm"] > 0  # SGD momentum buffers
    assert values["grad_scaler_scale"] is None
    for name in ("weights_digest", "buffers_digest", "optimizer_state_digest", "rng_python", "rng_numpy", "rng_torch"):
        assert isinstance(values[name], str) and len(values[name]) == m.DIGEST_CHARS


def test_digests_change_with_one_bit_and_norms_say_how_far(trained: tuple[pl.Trainer, pl.LightningModule]) -> None:
    trainer, module = trained
    before = (m.get_weights_digest(trainer, module), m.get_weights_norm(trainer, module))
    with torch.no_grad():
        weight = module.layer.weight
        weight.view(-1)[0] = torch.nextafter(weight.view(-1)[0], torch.tensor(10.0))
    after = (m.get_weights_digest(trainer, module), m.get_weights_norm(trainer, module))
    assert after[0] != before[0]
    assert after[1] == pytest.approx(before[1], rel=1e-6)
    module.running.add_(1.0)
    assert m.get_buffers_norm(trainer, module) == pytest.approx(3**0.5)


def test_rng_digests_follow_each_generator(trained: tuple[pl.Trainer, pl.LightningModule]) -> None:
    trainer, module = trained
    getters = {"python": m.get_rng_python, "numpy": m.get_rng_numpy, "torch": m.get_rng_torch}
    draws = {"python": random.random, "numpy": np.random.rand, "torch": lambda: torch.rand(1)}
    for name, draw in draws.items():
        before = {k: g(trainer, module) for k, g in getters.items()}
        draw()
        after = {k: g(trainer, module) for k, g in getters.items()}
        assert [k for k in getters if before[k] != after[k]] == [name]


def test_grad_scaler_scale_is_read_from_the_precision_plugin(trained: tuple[pl.Trainer, pl.LightningModule]) -> None:
    _, module = trained
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)

    class WithPlugin:
        precision_plugin = plugin

    assert m.get_grad_scaler_scale(WithPlugin(), module) == 512.0  # type: ignore[arg-type]


def test_batch_ids_and_hash() -> None:
    batch = {"idx": torch.tensor([3, 1]), "x": torch.ones(2, 2)}
    assert batch_sample_ids(torch.nn.Module(), batch) == [3, 1]  # type: ignore[arg-type]
    assert batch_sample_ids(torch.nn.Module(), torch.ones(2)) is None  # type: ignore[arg-type]
    changed = {"idx": torch.tensor([3, 1]), "x": torch.ones(2, 2).index_fill_(0, torch.tensor([1]), 2.0)}
    assert batch_hash(batch) == batch_hash({"x": torch.ones(2, 2), "idx": torch.tensor([3, 1])})
    assert batch_hash(batch) != batch_hash(changed)


def test_to_jsonable_handles_numpy_and_nesting() -> None:
    value = {"a": np.float32(1.5), "b": (torch.tensor(2), [np.arange(2)])}
    assert m.to_jsonable(value) == {"a": 1.5, "b": [2, [[0, 1]]]}
