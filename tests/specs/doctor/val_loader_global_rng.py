"""Doctor pattern ``loader-global-rng``: a validation loader without a generator."""

from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, TinyDataModule, TinyLightningHarness

EXPECTED = "loader-global-rng"


class GlobalRngDataModule(TinyDataModule):
    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=BATCH_SIZE)


class GlobalRngHarness(TinyLightningHarness):
    datamodule_class = GlobalRngDataModule
