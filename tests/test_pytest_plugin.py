"""The pytest plugin, used the way a project would: pytest in a subprocess on a small test file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from tests.conftest import BROKEN_SPEC, DEFAULT_SPEC, REPO, background_fixture

# A plain PyTorch DDP script (no Lightning): the fixture's run_script is the same `run -- SCRIPT`
# command for every kind of script; the Lightning kind is run through it in tests/test_wrap.py.
DDP_SCRIPT = REPO / "tests" / "scripts" / "ddp_train.py"

pytestmark = pytest.mark.timeout(1500)

TEST_FILE = '''
"""A project's resume tests, written against the stop_and_go fixture."""

from typing import Any

import lightning.pytorch as pl

from harness_specs.tiny_lightning import MAX_STEPS, SEED, TinyDataModule, TinyRegressionModule
from workers import Mode, RngStateCallback, StopAndGoHarness, torchrun_trainer_kwargs


class SeedStyleHarness(StopAndGoHarness):
    """A BioNeMo-style harness: only the seed API's two methods."""

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, None]:
        pl.seed_everything(SEED, verbose=False)
        return TinyRegressionModule(), TinyDataModule(), None

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        return pl.Trainer(
            default_root_dir=self.root_dir,
            max_steps=MAX_STEPS,
            val_check_interval=self.val_check_interval,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            deterministic=True,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            # The default spec's module draws dropout from the global RNG: the kit restores it per rank.
            callbacks=[*self.get_callbacks(mode), RngStateCallback()],
            **torchrun_trainer_kwargs(),
        )


def test_default_spec_resumes(stop_and_go):
    result = stop_and_go.run({default!r}, nproc_per_node=2, reference=False, extra_args=["--single-stop"])
    assert result.verified and result.report["verdict"]["ok"]


def test_broken_scheduler_resumes(stop_and_go):
    stop_and_go.run({broken!r}, nproc_per_node=1, extra_args=["--single-stop"])


def test_seed_style_harness_resumes(stop_and_go):
    result = stop_and_go.run_harness(SeedStyleHarness, nproc_per_node=1, reference=False)
    assert result.report["harness"] == "SeedStyleHarness"


def test_unmodified_script_resumes(stop_and_go):
    result = stop_and_go.run_script(
        {script!r}, "--max-steps", "8", "--save-every", "3", nproc_per_node=1, reference=False
    )
    assert result.report["sentinel"]["step"] == 3
    assert result.report["sentinel"]["instrumentation"] == "plain"
'''


def test_the_plugin_is_registered_as_pytest11(tmp_path: Path) -> None:
    # From a neutral directory: what an installed stop-and-go declares, not a build leftover here.
    probe = (
        "from importlib.metadata import entry_points; "
        "print({ep.name: ep.value for ep in entry_points(group='pytest11')}.get('stop_and_go'))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "orchestrator.pytest_plugin", proc.stderr


def _inner_pytest_command(out: Path) -> list[str]:
    project = out / "project"
    project.mkdir()
    (project / "test_resume.py").write_text(
        TEST_FILE.format(default=str(DEFAULT_SPEC), broken=str(BROKEN_SPEC), script=str(DDP_SCRIPT)), encoding="utf-8"
    )
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--junitxml=results.xml", "test_resume.py"]


# Reads no other test's files: it runs in the background lane (tests/background.py), in its
# own rootdir (the plugin comes from the installed entry point), without this session's
# STOP_AND_GO_ / PYTEST_ variables.
inner_pytest = background_fixture(
    "inner_pytest",
    _inner_pytest_command,
    lambda proc, run: (proc, run.out_dir / "project" / "results.xml"),
    timeout=1400,
    cwd=lambda out: out / "project",
)


def _cases(junit: Path) -> dict[str, object]:
    return {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}


def test_verified_runs_pass_and_the_broken_one_fails(
    inner_pytest: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, junit = inner_pytest
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    cases = _cases(junit)
    assert set(cases) == {
        "test_default_spec_resumes",
        "test_broken_scheduler_resumes",
        "test_seed_style_harness_resumes",
        "test_unmodified_script_resumes",
    }
    assert cases["test_default_spec_resumes"].is_passed, proc.stdout[-4000:]
    assert cases["test_seed_style_harness_resumes"].is_passed, proc.stdout[-4000:]
    assert cases["test_unmodified_script_resumes"].is_passed, proc.stdout[-4000:]
    assert not cases["test_broken_scheduler_resumes"].is_passed


def test_failure_message_names_learning_rate_with_the_metric_table(
    inner_pytest: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, junit = inner_pytest
    (failure,) = _cases(junit)["test_broken_scheduler_resumes"].result
    assert isinstance(failure, Failure)
    text = failure.text or ""
    assert "exit 1: resume mismatch" in text
    assert "learning_rate: first divergent step 3" in text
    assert "metric" in text and "saved" in text and "resumed" in text and "reference" in text
    assert "diverged at step 3" in text
    # pytrace=False: the message, not a traceback into the plugin.
    assert "pytest_plugin.py" not in text
    assert "learning_rate" in proc.stdout


def test_a_missing_spec_fails_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "test_missing.py").write_text(
        "def test_missing(stop_and_go):\n    stop_and_go.run('no_such_spec.py')\n", encoding="utf-8"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_missing.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "stop-and-go: spec file not found: no_such_spec.py" in proc.stdout
    assert "Traceback" not in proc.stdout
