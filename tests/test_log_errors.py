"""A worker that dies before writing its result is still named, from the phase log."""

from __future__ import annotations

from pathlib import Path

from orchestrator.run.failures import last_worker_error

# Lines as torchrun --tee prints them when the worker package fails to import.
LOG = """\
[default0]:Traceback (most recent call last):
[default0]:  File "/repo/workers/harness.py", line 31, in <module>
[default0]:ImportError: cannot import name 'builtin_metrics' from 'workers.metrics'
[default1]:Traceback (most recent call last):
[default1]:ModuleNotFoundError: No module named 'lightning'
E1125 16:26:39.491000 19353 api.py:1002] failed (exitcode: 1) local_rank: 0
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
"""


def test_last_worker_error_names_rank_and_exception(tmp_path: Path) -> None:
    log = tmp_path / "stop.log"
    log.write_text(LOG)
    assert last_worker_error(log) == "rank 1: ModuleNotFoundError: No module named 'lightning'"


def test_no_worker_error_in_log(tmp_path: Path) -> None:
    log = tmp_path / "stop.log"
    log.write_text("[default0]:hello\nChildFailedError:\n")
    assert last_worker_error(log) is None
    assert last_worker_error(tmp_path / "absent.log") is None
