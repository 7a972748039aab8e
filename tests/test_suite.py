"""``python -m orchestrator suite``: specs x scenarios in parallel, summary, JUnit, exit code."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator.suite.config import SuiteError, load_suite
from orchestrator.suite.references import leaders, reference_args, sharing_key
from orchestrator.suite.results import junit_xml
from orchestrator.suite.runner import run_entries, visible_gpus
from tests.conftest import REPO, assert_nothing_left, background_fixture, one_line

SUITES = Path(__file__).resolve().parent / "suites"


def run_suite(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "suite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


# The smoke suite reads no other test's files: it runs in the background lane (tests/background.py).
smoke_suite = background_fixture(
    "smoke_suite",
    lambda out: [sys.executable, "-m", "orchestrator", "suite", str(SUITES / "smoke.toml"), "--out", str(out / "suite"),
                 "--jobs", "2"],
    lambda proc, run: (proc, run.out_dir / "suite"),
    timeout=600,
)  # fmt: skip


def test_default_and_broken_spec_run_in_parallel_and_fail_the_suite(
    smoke_suite: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, out = smoke_suite
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 of 4 entries verified, 2 failed" in proc.stdout
    assert one_line(proc.stderr) == "error: 2 of 4 entries failed: broken_scheduler-sigkill, broken_scheduler-sigterm"

    summary = json.loads((out / "summary.json").read_text())
    codes = {e["name"]: e["exit_code"] for e in summary["entries"]}
    assert codes == {
        "tiny_lightning-sigkill": 0,
        "tiny_lightning-sigterm": 0,
        "broken_scheduler-sigkill": 1,
        "broken_scheduler-sigterm": 1,
    }
    # The two specs' first entries ran at once: each started before the other ended.
    starts = [line for line in proc.stdout.splitlines() if line.startswith("[suite] start")]
    assert starts[:2] == ["[suite] start tiny_lightning-sigkill", "[suite] start broken_scheduler-sigkill"]
    assert proc.stdout.index(starts[1]) < proc.stdout.index("[suite] tiny_lightning-sigkill:")
    # One continuous reference per spec: each sigterm entry started once its sigkill entry
    # had ended, and judged against that entry's reference (the broken spec still fails).
    for spec in ("tiny_lightning", "broken_scheduler"):
        leader, follower = out / "entries" / f"{spec}-sigkill", out / "entries" / f"{spec}-sigterm"
        assert f"[suite] start {spec}-sigterm, reusing {spec}-sigkill's reference" in proc.stdout
        assert proc.stdout.index(f"[suite] {spec}-sigkill:") < proc.stdout.index(f"[suite] start {spec}-sigterm")
        report = json.loads((follower / "report.json").read_text())
        assert report["timings"]["reference"] == f"shared from {leader}"
        assert "continuous" not in {p["name"] for p in report["phases"]}
        assert report["phases"][0]["kill"]["signal"] == "SIGTERM"

    root = ET.parse(out / "junit.xml").getroot()
    assert (root.get("name"), root.get("tests"), root.get("failures"), root.get("errors")) == ("smoke", "4", "2", "0")
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == set(codes)
    assert cases["tiny_lightning-sigkill"].find("failure") is None
    failure = cases["broken_scheduler-sigkill"].find("failure")
    assert failure is not None and failure.get("type") == "ResumeMismatch"

    for name in codes:
        run_dir = out / "entries" / name
        assert json.loads((run_dir / "report.json").read_text())["exit_code"] == codes[name]
        assert (out / "logs" / f"{name}.log").read_text()
        assert_nothing_left(run_dir)


def test_entries_share_a_reference_only_where_the_continuous_run_is_the_same(tmp_path: Path) -> None:
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(
        f'specs = ["{REPO}/harness_specs/tiny_lightning.py", "{REPO}/harness_specs/broken_scheduler.py",'
        f' {{ command = ["{REPO}/tests/scripts/plain_train.py"] }}]\n'
        '[[scenario]]\nname = "kill"\n'
        '[[scenario]]\nname = "term"\nkill_signal = "TERM"\nargs = ["--kill-at", "3", "--cycles", "2"]\n'
        '[[scenario]]\nname = "one"\nnproc_per_node = 1\n'
        '[[scenario]]\nname = "none"\nreference = false\n'
        '[[scenario]]\nname = "calibrate"\nargs = ["--calibrate"]\n'
    )
    entries = load_suite(suite_file).entries
    # Stop/go scenarios share; other ranks, no reference, calibration and scripts do not.
    assert leaders(entries) == {
        "tiny_lightning-term": "tiny_lightning-kill",
        "broken_scheduler-term": "broken_scheduler-kill",
    }
    assert sharing_key(entries[0]) != sharing_key(entries[5])  # the same scenario, another spec
    # A leader that left no finished reference: the follower runs its own.
    assert reference_args(tmp_path / "no_run", entries[1]) == []


def test_directory_suite_packs_one_entry_per_gpu(tmp_path: Path) -> None:
    # Fast entries (the orchestrator refuses a spec with no class, exit 2) on two fake GPU ids.
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("a", "b", "c"):
        (specs / f"{name}.py").write_text("x = 1\n")
    suite = load_suite(specs)
    results = run_entries(suite.entries, tmp_path / "out", jobs=1, gpus=["3", "5"], echo=False)
    assert [r.name for r in results] == ["a-default", "b-default", "c-default"]
    assert [r.exit_code for r in results] == [2, 2, 2]
    assert {r.device for r in results} <= {"cuda:3", "cuda:5"}
    assert {results[0].device, results[1].device} == {"cuda:3", "cuda:5"}
    assert all("defines no class" in r.message for r in results)
    # Entries that left no report.json still get their testcase, as errors.
    root = junit_xml("dir", results).getroot()
    assert (root.get("tests"), root.get("errors")) == ("3", "3")
    errors = [case.find("error") for case in root.iter("testcase")]
    assert all(e is not None and "defines no class" in (e.get("message") or "") for e in errors)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_specs_times_scenarios(tmp_path: Path) -> None:
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(
        f'specs = ["{REPO}/harness_specs/tiny_lightning.py", "{REPO}/harness_specs/broken_scheduler.py"]\n'
        "[defaults]\ntimeout = 50\n"
        '[[scenario]]\nname = "kill"\n'
        '[[scenario]]\nname = "term"\nkill_signal = "TERM"\ngrace = 3\nreference = false\nargs = ["--verbose"]\n'
    )
    suite = load_suite(suite_file)
    assert [e.name for e in suite.entries] == [
        "tiny_lightning-kill",
        "tiny_lightning-term",
        "broken_scheduler-kill",
        "broken_scheduler-term",
    ]
    term = suite.entries[1]
    assert term.timeout_s == 50
    args = term.orchestrator_args(tmp_path / "run")
    assert args[args.index("--kill-signal") + 1] == "TERM"
    assert "--no-reference" in args and "--verbose" in args
    assert args[args.index("--timeout") + 1] == "50"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("specs = [", "not valid TOML"),
        ("specs = []", "'specs' must be a non-empty list"),
        ('specs = ["nope.py"]', "spec not found: nope.py"),
        ('specs = ["x.py"]\nbogus = 1', "unknown key(s) bogus"),
    ],
)
def test_bad_suite_is_one_line_exit_2(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "x.py").write_text("class A: pass\n")
    suite_file = tmp_path / "bad.toml"
    suite_file.write_text(content)
    with pytest.raises(SuiteError) as err:
        load_suite(suite_file)
    assert expected in str(err.value)
    proc = run_suite(str(suite_file), "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    assert expected in one_line(proc.stderr)


def test_missing_suite_exits_2(tmp_path: Path) -> None:
    proc = run_suite(str(tmp_path / "missing.toml"), timeout=60)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"error: suite not found: {tmp_path / 'missing.toml'}"
