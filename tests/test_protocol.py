"""The file protocol: atomic writes and locked reads hold under concurrent processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.protocol import (
    MetadataLayout,
    PhasePlan,
    ProtocolError,
    RunLayout,
    Sentinel,
    WorkerResult,
    read_json,
    read_phase_plan,
    read_results,
    write_json_atomic,
)
from orchestrator.run.prewarm import defer_optional, later_epoch_possible

WRITES_PER_WRITER = 150
PAYLOAD_FLOATS = 5000  # ~100 KB per document, so a torn write would be likely to show


def _document(writer: int, seq: int) -> dict:
    values = [writer * 1e6 + seq + i / PAYLOAD_FLOATS for i in range(PAYLOAD_FLOATS)]
    digest = hashlib.sha256(json.dumps(values).encode()).hexdigest()
    return {"writer": writer, "seq": seq, "values": values, "digest": digest}


def _writer(path: str, writer: int) -> None:
    for seq in range(WRITES_PER_WRITER):
        write_json_atomic(path, _document(writer, seq))


def _reader(path: str, writers_done: Any, queue: mp.Queue) -> None:
    reads = torn = 0
    deadline = time.monotonic() + 120
    while not writers_done.is_set() and time.monotonic() < deadline:
        doc = read_json(path)
        if doc is None:
            continue
        reads += 1
        if hashlib.sha256(json.dumps(doc["values"]).encode()).hexdigest() != doc["digest"]:
            torn += 1
    queue.put((reads, torn))


def test_concurrent_writers_and_readers_never_see_a_torn_document(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.json")
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    writers_done = ctx.Event()
    writers = [ctx.Process(target=_writer, args=(path, w)) for w in range(3)]
    readers = [ctx.Process(target=_reader, args=(path, writers_done, queue)) for _ in range(3)]
    for proc in writers + readers:
        proc.start()
    for proc in writers:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    writers_done.set()
    for proc in readers:
        proc.join(timeout=90)
    results = [queue.get(timeout=10) for _ in readers]
    total_reads = sum(r for r, _ in results)
    assert total_reads > 0
    assert sum(t for _, t in results) == 0
    final = read_json(path)
    assert final["seq"] == WRITES_PER_WRITER - 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_read_missing_file_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json") is None


def test_invalid_json_is_a_protocol_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"step": 2')
    with pytest.raises(ProtocolError, match="not valid JSON"):
        read_json(path)


def test_sentinel_round_trip_and_incomplete_sentinel(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    sentinel = Sentinel(step=4, checkpoint_path="/ckpt", metadata_dir="/md", world_size=2, pid=1)
    write_json_atomic(layout.sentinel, sentinel.to_dict())
    assert Sentinel.from_dict(read_json(layout.sentinel)) == sentinel
    with pytest.raises(ProtocolError, match="incomplete sentinel"):
        Sentinel.from_dict({"step": 4})


def test_results_are_read_per_rank(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    for rank in (1, 0):
        result = WorkerResult(phase="go", rank=rank, world_size=2, pid=100 + rank, status="ok")
        write_json_atomic(layout.result("go", rank), result.to_dict())
    results = read_results(layout, "go")
    assert sorted(results) == [0, 1]
    assert results[1].pid == 101
    assert read_results(layout, "stop") == {}


def test_layouts_keep_phases_and_ranks_apart(tmp_path: Path) -> None:
    md = MetadataLayout(tmp_path)
    paths = {
        md.metadata(0, step=2),
        md.metadata(1, step=2),
        md.metadata(0, step=4),
        md.resume_check("go", 0),
        md.resume_check("go1", 0),
        md.trajectory("go", 0),
        md.trajectory("stop", 0),
    }
    assert len(paths) == 7
    run = RunLayout(tmp_path)
    assert run.harness_root("stop") == run.harness_root("go") != run.harness_root("continuous")


def test_phase_plans_round_trip_and_default_by_label(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    plan = PhasePlan("go1", "go", stop_after_resume=True, kill_at="random:3")
    write_json_atomic(layout.phase_plan("go1"), plan.to_dict())
    assert read_phase_plan(layout, "go1") == plan
    assert plan.stops
    assert read_phase_plan(layout, "continuous") == PhasePlan("continuous", "continuous")
    assert not read_phase_plan(layout, "go").stops
    with pytest.raises(ProtocolError, match="no plan for phase 'go7'"):
        read_phase_plan(layout, "go7")


def test_an_optional_phase_warms_only_where_its_stop_says_it_can_run(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    assert later_epoch_possible(layout, "stop") is None  # stop has not reached its train start
    for later, possible in (([], False), ([10], True), (None, True)):  # None: a schedule it could not read
        write_json_atomic(layout.outlook("stop"), {"label": "stop", "later_epoch_checkpoints": later})
        assert later_epoch_possible(layout, "stop") is possible
    # go1 waits for that only where stop, go and go1 together have more ranks than cores.
    cores = os.cpu_count() or 1
    assert defer_optional(SimpleNamespace(nproc_per_node=cores, go_nproc_per_node=None))
    assert not defer_optional(SimpleNamespace(nproc_per_node=1, go_nproc_per_node=None)) or cores < 3
    assert defer_optional(SimpleNamespace(nproc_per_node=1, go_nproc_per_node=cores))
