"""The HTML report every run writes, --html-report's copy and --png-report, from a real run of the
broken spec, looked at like a person would."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from html import escape as html_escape
from pathlib import Path

import pytest

from tests.conftest import BROKEN_SPEC, ReportedRun, Run, one_line, run_orchestrator

pytestmark = pytest.mark.timeout(900)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def broken_run(broken_reported_run: ReportedRun) -> tuple[Run, Path, Path]:
    # One resume (--single-stop): the charts show the stop, the go and the reference. The
    # same run writes tests/test_junit.py's file and serves tests/test_end_to_end.py.
    return broken_reported_run.run, broken_reported_run.html, broken_reported_run.png


def _metric_card(page: str, metric: str) -> str:
    start = page.index(f'<article class="metric" id="metric-{metric}">')
    return page[start : page.index("</article>", start)]


def test_run_reports_where_the_files_are(broken_run: tuple[Run, Path, Path]) -> None:
    run, html, png = broken_run
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    # Every run writes its page in the run dir; --html-report gets a copy of it.
    assert f"html report: {run.run_dir / 'report.html'}\n" in run.stdout
    assert f"html report: {html} (a copy)" in run.stdout
    assert html.read_bytes() == (run.run_dir / "report.html").read_bytes()
    assert f"png report: {png}" in run.stdout


def test_first_screen_names_the_root_cause_and_zooms_on_each_resume(broken_run: tuple[Run, Path, Path]) -> None:
    run = broken_run[0]
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    root = run.report["diagnosis"][0]
    # Above the phases and the tables: the verdict, the root cause as the terminal prints it, the zoom.
    head = page[: page.index("<h2>Phases</h2>")]
    assert "RESUME MISMATCH" in head and "<h2>Root cause</h2>" in head
    for key in ("detail", "cause", "because", "fix"):
        if key in root:  # the same words the terminal shows ("because": where the diagnosis gives it)
            assert html_escape(root[key]) in head, key
    assert f"cause: {root['cause']}" in run.stdout and root["fix"] in run.stdout
    zoom = head[head.index('<section class="resumes">') :]
    assert "<code>learning_rate</code>, rank 0" in zoom  # the metric that diverged first
    figures = re.findall(r"<figcaption>(.*?)</figcaption>(.*?)</figure>", zoom, re.S)
    assert [caption for caption, _ in figures] == ["go resumed from step 2"]  # one resume (--single-stop)
    for caption, svg in figures:
        steps = [int(t) for t in re.findall(r'class="tick" text-anchor="middle">(\d+)</text>', svg)]
        resumed = int(caption.rsplit(" ", 1)[1])
        assert min(steps) >= resumed - 3 and max(steps) <= resumed + 6, (caption, steps)  # zoomed
        assert "#94a3b8" in svg and "#ea580c" in svg and 'class="resume-mark"' in svg  # reference and go


def test_html_is_self_contained(broken_run: tuple[Run, Path, Path]) -> None:
    page = broken_run[1].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<style>" in page and "<script>" in page


def test_html_overlays_reference_and_stop_go_with_kill_resume_and_divergence(
    broken_run: tuple[Run, Path, Path],
) -> None:
    page = broken_run[1].read_text(encoding="utf-8")
    assert "RESUME MISMATCH" in page
    card = _metric_card(page, "learning_rate")
    assert "diverged at step 3" in card
    assert "first divergence: step 3" in card
    assert "stop killed after step 2" in card
    assert "go: resume from step 2" in card
    # One chart per rank; in each, the reference line over all 12 steps, the stop line
    # (steps 1-2) and the go line from the resumed value at step 2 to step 12.
    charts = re.findall(r'<div class="rank-view[^"]*" data-rank="(\d)">(.*?)</div>', card, re.S)
    assert [rank for rank, _ in charts] == ["0", "1"]
    for _, chart in charts:
        lines = re.findall(r'<polyline points="([^"]+)" fill="none" stroke="(#[0-9a-f]+)"', chart)
        by_colour = {colour: len(points.split()) for points, colour in lines}
        assert by_colour["#94a3b8"] == 12  # reference
        assert by_colour["#2563eb"] == 2  # stop
        assert by_colour["#ea580c"] == 11  # go: the resumed point, then steps 3-12
        assert 'class="diverge-band"' in chart and 'class="kill-line"' in chart and 'class="resume-mark"' in chart
    # A digest is not a number: it gets the per-step match strip, with the divergence boxed.
    digest = _metric_card(page, "weights_digest")
    assert "<polyline" not in digest and 'class="diverge-box"' in digest
    assert "DIFFERS from the reference" in digest


def test_html_svg_is_well_formed(broken_run: tuple[Run, Path, Path]) -> None:
    page = broken_run[1].read_text(encoding="utf-8")
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(svgs) >= 2 * 5  # every metric on both ranks
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_png_overlay_is_an_image(broken_run: tuple[Run, Path, Path]) -> None:
    png = broken_run[2]
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 800 and height >= 500
    assert len(data) > 20_000  # two drawn panels, not an empty canvas


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(broken_run: tuple[Run, Path, Path], tmp_path: Path) -> None:
    from PIL import Image  # comes with matplotlib

    html = broken_run[0].run_dir / "report.html"  # the page every run writes
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1200,900",
                html.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 900)
    # The first screen: the red header of a failed verdict at the top, and below it the
    # zoomed overlay: the reference's grey line and the resumed run's orange one.
    red = sum(1 for x in range(100, 1100, 10) if _is_red(image.getpixel((x, 60))))
    assert red > 50
    lower = image.crop((0, 420, 1200, 900))
    grey = _pixels_near(lower, (0x94, 0xA3, 0xB8))
    orange = _pixels_near(lower, (0xEA, 0x58, 0x0C))
    assert grey > 300 and orange > 300, (grey, orange)


def _pixels_near(image: object, colour: tuple[int, int, int]) -> int:
    counts = image.getcolors(maxcolors=1_000_000) or []  # type: ignore[attr-defined]
    return sum(n for n, pixel in counts if all(abs(a - b) <= 24 for a, b in zip(pixel, colour, strict=True)))


def _is_red(pixel: tuple[int, int, int]) -> bool:
    r, g, b = pixel
    return r > 170 and g < 90 and b < 90


def test_unwritable_report_path_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    run = run_orchestrator(BROKEN_SPEC, tmp_path / "run", "--html-report", str(blocker / "report.html"))
    assert run.returncode == 2
    assert "--html-report" in one_line(run.stderr) and "not a directory" in run.stderr
    assert not (tmp_path / "run").exists()
