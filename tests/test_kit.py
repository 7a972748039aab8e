"""The resumability kit: an ordinary setup ported with it resumes exactly; without it, not.

``tests/setups/digits_plain.py`` is an ordinary Lightning classifier (shuffled
``DataLoader`` with 2 workers, AdamW + OneCycleLR per step, dropout);
``tests/setups/digits_kit.py`` is the same setup ported with ``workers.kit``. The runs are
real ``python -m orchestrator`` runs (torchrun, SIGKILL, fresh processes per phase). With
``--cycles`` each resumed phase is stopped again at the next checkpoint (every 2 steps),
so one run resumes mid-epoch, from a checkpoint on an epoch's last batch, and after an
epoch boundary (64 samples, 8 per rank and step: 8 steps an epoch on 1 rank, 4 on 2).
The sampler and RNG-state tests run in this process.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, assert_nothing_left, run_orchestrator
from workers.kit import ResumableSampler, RngStateCallback, rng_states, set_rng_states

pytestmark = pytest.mark.timeout(1800)

PLAIN = REPO / "tests" / "setups" / "digits_plain.py"
PORTED = REPO / "tests" / "setups" / "digits_kit.py"


# Two ranks: 4 steps an epoch, so 3 cycles resume mid-epoch, on the epoch's last batch and
# after the boundary. (One rank needs 5 cycles for the same; its resumes are run elsewhere.)
@pytest.mark.parametrize(("ranks", "cycles"), [(2, 3)])
def test_ported_setup_resumes_mid_epoch_on_an_epochs_last_batch_and_after_the_boundary(
    tmp_path: Path, ranks: int, cycles: int
) -> None:
    run = run_orchestrator(
        PORTED, tmp_path / "run", "--nproc-per-node", str(ranks), "--cycles", str(cycles), "--quiet", timeout=1500
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "resume verified" in run.stdout
    verdict = run.report["verdict"]
    resumed = [r["resumed_step"] for r in verdict["resumes"]]
    per_epoch = 64 // (8 * ranks)
    assert resumed == list(range(2, 2 * cycles + 1, 2))
    assert any(step % per_epoch for step in resumed if step < per_epoch)  # mid-epoch
    assert per_epoch in resumed  # a checkpoint on epoch 0's last batch
    assert any(step > per_epoch and step % per_epoch for step in resumed)  # after the epoch boundary
    assert verdict["ledger"]["ok"] and all(n > 0 for n in verdict["ledger"]["samples_checked"].values())
    assert_nothing_left(run.run_dir)


def test_the_same_setup_without_the_kit_fails_and_the_doctor_points_at_the_kit(tmp_path: Path) -> None:
    # One resume is enough: the lost RNG shows at the first resume point's checks.
    run = run_orchestrator(PLAIN, tmp_path / "run", "--no-reference", "--single-stop", "--quiet", timeout=900)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "rng_torch" in {f["metric"] for f in run.report["verdict"]["findings"]}
    # The run's own diagnosis points at the kit, not only the doctor.
    assert "kit" in run.report["diagnosis"][0]["fix"], run.report["diagnosis"][0]
    assert_nothing_left(run.run_dir)
    doctor = subprocess.run(
        [sys.executable, "-m", "orchestrator", "doctor", str(PLAIN)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert doctor.returncode == 0, doctor.stderr
    for fix in ("workers.kit.ResumableLoader", "workers.kit.RngStateCallback"):
        assert fix in doctor.stdout


class Sized(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> int:
        return index


def test_sampler_saves_an_epochs_end_as_the_next_epochs_start() -> None:
    sampler = ResumableSampler(Sized(), seed=3, num_replicas=2, rank=0)
    sampler.set_epoch(1)
    first_epoch_1 = list(sampler)
    assert sampler.state_dict() == {"consumed_samples": 32, "epoch": 2, "seed": 3}
    resumed = ResumableSampler(Sized(), seed=3, num_replicas=2, rank=0)
    resumed.load_state_dict({"consumed_samples": 16 + 6, "epoch": 1, "seed": 3})
    assert list(resumed) == first_epoch_1[3:]  # epoch 1, 3 samples per rank consumed
    resumed.set_epoch(2)
    assert len(list(resumed)) == 8  # a later epoch starts at its beginning


def test_sampler_state_does_not_depend_on_the_world_size() -> None:
    two = [ResumableSampler(Sized(), seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    seen = sorted(i for s in two for i in list(s)[:2])  # 2 samples on each rank
    one = ResumableSampler(Sized(), seed=5, num_replicas=1, rank=0)
    assert sorted(list(one)[:4]) == seen
    one.load_state_dict(two[0].state_dict())  # rank 0 saved after consuming everything: 16
    assert one.state_dict()["epoch"] == 1


def test_rng_states_load_with_weights_only_and_restore() -> None:
    callback = RngStateCallback(seed=1)
    checkpoint: dict = {}
    callback.on_save_checkpoint(None, None, checkpoint)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    expected = torch.rand(3)
    set_rng_states(loaded["rng_states_per_rank"][0])
    assert torch.equal(torch.rand(3), expected)
    assert set(rng_states()) >= {"python", "numpy", "torch"}


def _resumed_stream(dataset: torch.utils.data.Dataset, stop_after: int, total: int) -> tuple[list, list]:
    """Batches of one uninterrupted pass, and of a pass stopped and resumed from a checkpoint.

    The loader's state goes through ``torch.save``/``torch.load(weights_only=True)``, as in
    a Lightning checkpoint; the resumed loader is a new one with new worker processes.
    """
    from workers.kit import ResumableLoader

    def loader() -> ResumableLoader:
        return ResumableLoader(dataset, batch_size=4, seed=7, num_workers=2)

    continuous = [batch["x"] for _, batch in zip(range(total), loader(), strict=False)]
    first = loader()
    stopped = [batch["x"] for _, batch in zip(range(stop_after), first, strict=False)]
    buffer = io.BytesIO()
    torch.save({"loader": first.state_dict()}, buffer)
    buffer.seek(0)
    resumed = loader()
    resumed.load_state_dict(torch.load(buffer, weights_only=True)["loader"])
    rest = [batch["x"] for _, batch in zip(range(total - stop_after), resumed, strict=False)]
    return continuous, stopped + rest


def test_worker_augmentation_resumes_with_worker_rng_state_and_not_without() -> None:
    # The worker_augmentation_noise mutant's dataset: noise from the worker's global torch RNG.
    from harness_specs.mutants.worker_augmentation_noise import NoisyRegression
    from workers.kit import WorkerRngState

    plain = NoisyRegression(32, seed=1)
    continuous, resumed = _resumed_stream(plain, stop_after=3, total=6)
    assert all(torch.equal(a, b) for a, b in zip(continuous[:3], resumed[:3], strict=True))
    assert not torch.equal(continuous[3], resumed[3])  # the plain setup: other noise after the resume
    continuous, resumed = _resumed_stream(WorkerRngState(plain), stop_after=3, total=6)
    assert len(resumed) == 6 and all(torch.equal(a, b) for a, b in zip(continuous, resumed, strict=True))
