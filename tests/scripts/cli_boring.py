"""A user's LightningCLI script over Lightning's demo classes, unchanged by stop-and-go.

python cli_boring.py fit --seed_everything 1 --trainer.max_steps 8 [--ckpt_path CKPT]
"""

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

if __name__ == "__main__":
    LightningCLI(BoringModel, BoringDataModule)
