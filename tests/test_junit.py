"""--junit-xml, parsed back with junitparser as a CI server would read it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from tests.conftest import ReportedRun, Run

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def broken_run(broken_reported_run: ReportedRun) -> tuple[Run, Path]:
    # The same run as tests/test_html_report.py's: one run writes every report file.
    return broken_reported_run.run, broken_reported_run.junit


def test_mismatch_is_one_failed_testcase_naming_metric_and_step(broken_run: tuple[Run, Path]) -> None:
    run, path = broken_run
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    assert f"junit xml: {path}" in run.stdout
    suites = list(JUnitXml.fromfile(str(path)))
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.errors) == (1, 1, 0)
    cases = list(suite)
    assert len(cases) == 1
    case = cases[0]
    assert case.classname == "stop_and_go.broken_scheduler"
    assert case.name == "BrokenSchedulerHarness[SIGKILL, nproc=2]"
    assert case.time > 0
    (result,) = case.result
    assert isinstance(result, Failure)
    assert result.type == "ResumeMismatch"
    assert result.message.startswith("learning_rate: first divergent step 3")
    assert "metric" in result.text and "reference" in result.text and "diverged at step 3" in result.text


def test_logs_are_system_out_and_facts_are_properties(broken_run: tuple[Run, Path]) -> None:
    run, path = broken_run
    suite = next(iter(JUnitXml.fromfile(str(path))))
    case = next(iter(suite))
    out = case.system_out
    for phase in ("stop", "go", "continuous"):
        assert f"===== {phase}: " in out
    assert "max_steps=12" in out  # Lightning's own line from the go and continuous logs
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["exit_code"] == "1"
    assert properties["resume_step"] == "2"
    assert properties["run_dir"] == str(run.run_dir.resolve())


def test_junit_follows_the_ant_schema_layout(broken_run: tuple[Run, Path]) -> None:
    root = ET.parse(broken_run[1]).getroot()
    assert root.tag == "testsuites"
    (suite,) = list(root)
    assert suite.tag == "testsuite"
    for attribute in ("name", "tests", "failures", "errors", "time", "timestamp", "hostname"):
        assert suite.get(attribute), attribute
    assert [child.tag for child in suite] == ["properties", "testcase"]
    assert [child.tag for child in suite.find("testcase")] == ["failure", "system-out"]


def test_a_spec_error_is_an_error_testcase(no_harness_run: tuple[Run, Path]) -> None:
    run, path = no_harness_run
    assert run.returncode == 2, run.stderr
    suite = next(iter(JUnitXml.fromfile(str(path))))
    assert (suite.tests, suite.failures, suite.errors) == (1, 0, 1)
    (result,) = next(iter(suite)).result
    assert isinstance(result, Error)
    assert result.type == "Usage"
    assert "StopAndGoHarness" in result.message
