"""The ``nemo2`` backend, run with the NeMo venv's Python (``bash scripts/setup_nemo_venv.sh``).

NeMo 2.7.3 pins lightning<=2.4 and numpy<2, so it lives in its own venv; these tests run
their checks in subprocesses with that venv's interpreter, and skip when it is absent.
``STOP_AND_GO_NEMO_VENV`` names another venv directory.

What runs on CPU, and what does not:

- the spec loads and builds its harness, NeMo logger and backend;
- NeMo's checkpoint layout is vetted on real directories: ``weights/`` written by
  ``torch.distributed.checkpoint`` (the writer under megatron-core's ``torch_dist``
  format) with megatron's ``common.pt`` and ``metadata.json``, ``context/`` written by
  NeMo's own ``io_dump``, the ``-unfinished`` marker by NeMo's own ``ModelCheckpoint``
  methods. megatron-core's own save cannot run here: its writer calls
  ``torch.cuda.synchronize()`` (``filesystem_async.preload_tensors``);
- the seed's ``llm.train`` path runs on CPU through ``NeMoLogger.setup``,
  ``AutoResume.setup``, the optimizer hookup and the model's construction, and stops in
  ``MegatronStrategy.setup`` at ``MegatronParallel.init_model_parallel``, which opens a
  ``torch.cuda.Stream()`` unconditionally; a test pins that point;
- the end-to-end run (stop, kill, go, continuous, verdict) needs a GPU: ``@pytest.mark.gpu``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import background_fixture

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "harness_specs" / "nemo_gpt_tiny.py"
VENV = Path(os.environ.get("STOP_AND_GO_NEMO_VENV", REPO / ".venv-nemo"))
VENV_PYTHON = VENV / "bin" / "python"
ORCHESTRATOR = [str(VENV_PYTHON), "-m", "orchestrator", str(SPEC), "--run-dir"]

needs_nemo_venv = pytest.mark.skipif(
    not VENV_PYTHON.exists(),
    reason=f"no NeMo venv at {VENV} (run: bash scripts/setup_nemo_venv.sh, or set STOP_AND_GO_NEMO_VENV)",
)
needs_gpu = pytest.mark.skipif(
    shutil.which("nvidia-smi") is None,
    reason="nemo2 end to end needs CUDA: MegatronStrategy opens torch.cuda.Stream() in "
    "MegatronParallel.init_model_parallel ('torch.cuda.Stream requires CUDA support' on CPU)",
)


VENV_ENV = {"PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}


def venv_script(name: str, script: str, *args: Callable[[Path], str]) -> Any:
    """A fixture ``name``: the ``RESULT`` lines of ``script`` run by the NeMo venv's interpreter.

    Each NeMo import is seconds of one core: these runs go in the background lane
    (tests/background.py). ``args`` get the run's own directory.
    """
    command = lambda out: [str(VENV_PYTHON), "-c", textwrap.dedent(script), *(arg(out) for arg in args)]  # noqa: E731
    return background_fixture(name, command, lambda proc, _: results(proc), env=VENV_ENV, when=VENV_PYTHON.exists())


def results(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The ``RESULT key=value`` lines a script printed."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            key, _, value = line[len("RESULT ") :].partition("=")
            found[key] = value
    return found


SPEC_LOAD_SCRIPT = """
import sys
import lightning, nemo, megatron.core
from workers.spec_loader import load_spec_module, pick_harness
from workers.backends.nemo2 import NeMo2Backend, NeMo2StopAndGoHarness

cls = pick_harness(load_spec_module(sys.argv[1]), None)
harness = cls(root_dir=sys.argv[2])
print("RESULT harness=" + cls.__name__)
print("RESULT base=" + str(issubclass(cls, NeMo2StopAndGoHarness)))
print("RESULT backend=" + harness.backend.name)
print("RESULT logger_is_backends=" + str(harness.backend.nemo_logger is harness.nemo_logger))
log = harness.nemo_logger
print("RESULT nemo_ckpt_dir=" + f"{log.log_dir}/{log.name}/checkpoints")
print("RESULT harness_ckpt_dir=" + str(harness.checkpoint_dir))
print("RESULT versions=" + f"{nemo.__version__} {megatron.core.__version__} {lightning.__version__}")
"""
spec_load = venv_script("spec_load", SPEC_LOAD_SCRIPT, lambda _: str(SPEC), str)


@needs_nemo_venv
def test_spec_loads_in_the_nemo_venv(spec_load: dict[str, str]) -> None:
    found = spec_load
    assert found["harness"] == "NeMoGPTTinyHarness"
    assert found["base"] == "True"
    assert found["backend"] == "nemo2"
    assert found["logger_is_backends"] == "True"
    # AutoResume looks in <log_dir>/<name>/checkpoints; the harness vets the same directory.
    assert found["nemo_ckpt_dir"] == found["harness_ckpt_dir"]
    assert found["versions"].split()[:2] == ["2.7.3", "0.15.3"]


# Builds NeMo-layout checkpoints in argv[1], tears them one way after another, and prints
# what the backend's vetting and NeMo's own AutoResume make of each.
VETTING_SCRIPT = """
import os, sys
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

from nemo.collections.common.tokenizers.null_tokenizer import NullTokenizer
from nemo.collections import llm
from nemo.lightning import AutoResume
from nemo.lightning.pytorch.callbacks import ModelCheckpoint
from nemo.utils.app_state import AppState

import harness_specs.nemo_gpt_tiny as spec
from workers.backends.base import IncompleteCheckpointError, TornCheckpointError
from workers.backends.nemo2 import NeMo2Backend, auto_resume
from workers.backends.nemo2.checkpoints import autoresume_choice, check_shard_files

root = Path(sys.argv[1])
ckpts = root / "checkpoints"
backend = NeMo2Backend()
model = llm.GPTModel(spec.tiny_gpt_config(), tokenizer=NullTokenizer(vocab_size=spec.VOCAB_SIZE))


def save(step, last):
    # NeMo's order: marker, weights/ (metadata.json last), context/, marker removed.
    name = f"tiny--reduced_train_loss=1.0000-epoch=0-consumed_samples={2 * step}.0" + ("-last" if last else "")
    path = ckpts / name
    ModelCheckpoint.set_checkpoint_unfinished_marker(path)
    weights = path / "weights"
    torch.manual_seed(step)
    dcp.save({"module.w": torch.randn(64, 64), "module.b": torch.randn(64)}, checkpoint_id=str(weights))
    torch.save({"global_step": step, "epoch": 0}, weights / "common.pt")
    (weights / "metadata.json").write_text(
        '{"sharded_backend": "torch_dist", "sharded_backend_version": 1, '
        '"common_backend": "torch", "common_backend_version": 1}'
    )
    model.io_dump(path / "context", yaml_attrs=["config"])
    ModelCheckpoint.remove_checkpoint_unfinished_marker(path)
    return path


def vet(label, path):
    try:
        print(f"RESULT {label}=step {backend.checkpoint_step(path)}")
    except IncompleteCheckpointError as err:
        print(f"RESULT {label}=torn {err}")


def nemo_pick(label):
    AppState().log_dir = root
    try:
        print(f"RESULT {label}={AutoResume(resume_if_exists=True)._find_trainer_ckpt_path()}")
    except ValueError as err:
        print(f"RESULT {label}=error {err}")


def resume_of(label, path):
    resume = auto_resume(path)
    print(f"RESULT {label}={resume.resume_if_exists} {resume.resume_ignore_no_checkpoint} {resume.resume_from_path}")


old = save(2, last=False)
last = save(4, last=True)
print("RESULT old=" + str(old))
print("RESULT last=" + str(last))
print("RESULT context=" + ",".join(sorted(p.name for p in (last / "context").iterdir())))
print("RESULT shards=" + str(check_shard_files(last / "weights")))
vet("whole_last", last)
vet("whole_old", old)
vet("as_ckpt_name", str(last) + ".ckpt")
vet("as_weights", last / "weights")
print("RESULT candidates=" + ",".join(str(p) for p in backend.candidates(ckpts)))
print("RESULT our_pick=" + str(autoresume_choice(ckpts)))
nemo_pick("nemo_pick_whole")
resume_of("resume_whole", last)
resume_of("resume_stop", None)
backend.verify_complete(last, 4)
try:
    backend.verify_complete(last, 6)
except IncompleteCheckpointError as err:
    print("RESULT wrong_step=" + str(err))

# 1. NeMo's marker: a save (or a deletion) that never finished.
ModelCheckpoint.set_checkpoint_unfinished_marker(last)
vet("marked", last)
newest, step, skipped = backend.newest_complete_checkpoint(ckpts)
print(f"RESULT fallback={newest} {step} {len(skipped)}")
print("RESULT our_pick_marked=" + str(autoresume_choice(ckpts)))
nemo_pick("nemo_pick_marked")
resume_of("resume_fallback", newest)
ModelCheckpoint.remove_checkpoint_unfinished_marker(last)

# 2. A shard cut short with no marker (a truncated copy, a full disk).
shard = max((last / "weights").glob("*.distcp"), key=lambda p: p.stat().st_size)
data = shard.read_bytes()
shard.write_bytes(data[: len(data) // 2])
vet("short_shard", last)
shard.write_bytes(data)
vet("restored", last)

# 3. Each file the layout promises, missing in turn.
for label, rel in [("no_format", "weights/metadata.json"), ("no_index", "weights/.metadata"),
                   ("no_common", "weights/common.pt"), ("no_context", "context/io.json")]:
    target = last / rel
    saved = target.read_bytes()
    target.unlink()
    vet(label, last)
    target.write_bytes(saved)

# 4. A common.pt that does not load.
common = last / "weights" / "common.pt"
saved = common.read_bytes()
common.write_bytes(saved[: len(saved) // 3])
vet("bad_common", last)
common.write_bytes(saved)

# 5. Nothing whole left.
ModelCheckpoint.set_checkpoint_unfinished_marker(last)
ModelCheckpoint.set_checkpoint_unfinished_marker(old)
try:
    backend.newest_complete_checkpoint(ckpts)
except TornCheckpointError as err:
    print("RESULT none_left=" + str(err)[:60])
"""


vetting = venv_script("vetting", VETTING_SCRIPT, str)


@needs_nemo_venv
def test_checkpoint_vetting_of_nemo_layout(vetting: dict[str, str]) -> None:
    found = vetting
    last, old = found["last"], found["old"]
    # What NeMo's io_dump writes for the context, and a real DCP index over real shards.
    assert "io.json" in found["context"].split(","), found["context"]
    assert int(found["shards"]) >= 1
    assert found["whole_last"] == "step 4"
    assert found["whole_old"] == "step 2"
    assert found["as_ckpt_name"] == "step 4"  # Lightning's name for it
    assert found["as_weights"] == "step 4"  # trainer.ckpt_path after AutoResume
    assert found["candidates"] == f"{last},{old}"  # newest first
    # Whole -last: our pick is NeMo's, and go uses the seed's AutoResume unchanged.
    assert found["our_pick"] == last
    assert found["nemo_pick_whole"] == last
    assert found["resume_whole"] == "True True None"
    assert found["resume_stop"] == "False True None"
    assert "holds step 4, expected 6" in found["wrong_step"]
    # NeMo's -unfinished marker: never trusted; go falls back by path, as NeMo itself refuses.
    assert found["marked"].startswith("torn ") and "unfinished" in found["marked"]
    assert found["fallback"] == f"{old} 2 1"
    assert found["our_pick_marked"] == "None"
    assert found["nemo_pick_marked"].startswith("error Last checkpoint is unfinished")
    assert found["resume_fallback"] == f"True True {old}"
    # Tears the marker cannot show.
    assert found["short_shard"].startswith("torn ") and "its index needs" in found["short_shard"]
    assert found["restored"] == "step 4"
    assert "metadata.json is missing" in found["no_format"]
    assert "weights/.metadata is missing" in found["no_index"]
    assert "common.pt is missing" in found["no_common"]
    assert "context/io.json is missing" in found["no_context"]
    assert found["bad_common"].startswith("torn ") and "common.pt" in found["bad_common"]
    assert found["none_left"].startswith("torn checkpoint: no complete checkpoint")


# The stop fails: no phase is worth warming (a NeMo import is the slowest there is).
SEED_PATH_ARGS = ("--nproc-per-node", "1", "--timeout", "240", "--no-prewarm", "--quiet")
seed_path_on_cpu = background_fixture(
    "seed_path_on_cpu",
    lambda out: [*ORCHESTRATOR, str(out / "run"), *SEED_PATH_ARGS],
    lambda proc, run: (proc, run.out_dir / "run"),
    when=VENV_PYTHON.exists() and shutil.which("nvidia-smi") is None,
)


@needs_nemo_venv
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="pins the CPU limit; a GPU machine goes further")
def test_seed_path_on_cpu_stops_at_megatron_cuda_stream(
    seed_path_on_cpu: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The seed's llm.train runs on CPU up to MegatronStrategy's CUDA-only setup, no further."""
    proc, run_dir = seed_path_on_cpu
    log = (run_dir / "logs" / "stop.log").read_text()
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "torch.cuda.Stream requires CUDA support" in proc.stdout + proc.stderr
    # How far it got: NeMo's logger and AutoResume set up, the model built by
    # configure_model, then MegatronParallel.init_model_parallel's side stream.
    assert "Experiments will be logged at" in log
    assert "setup_megatron_parallel" in log and "init_model_parallel" in log
    assert "torch.cuda.Stream()" in log
    assert (run_dir / "harness" / "nemo_gpt_tiny").is_dir()


@pytest.mark.gpu
@needs_nemo_venv
@needs_gpu
def test_nemo_spec_verifies_end_to_end_on_gpu(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [*ORCHESTRATOR, str(run_dir), "--nproc-per-node", "1", "--timeout", "600", "--quiet"],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    checkpoints = run_dir / "harness" / "nemo_gpt_tiny" / "checkpoints"
    lasts = [p for p in checkpoints.iterdir() if p.is_dir() and p.name.endswith("-last")]
    assert lasts and all((p / "weights" / "metadata.json").is_file() for p in lasts)
    assert all((p / "context" / "io.json").is_file() for p in lasts)
