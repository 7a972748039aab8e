"""The README keeps its promises (its two commands are what CI runs) and the docs site builds strictly.

The site is built once, as a user of the docs extra builds it (``mkdocs build --strict``): no
broken link or anchor, no page left out of the nav; its CLI reference holds every option of
every command's parser, and its pages the exit codes and the report schema.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.exit_codes import DESCRIPTIONS
from orchestrator.judge.causes import CATALOG
from tests.conftest import REPO


def _generator() -> ModuleType:
    # scripts/ is no package: the docs' hook is loaded by path, as mkdocs loads it.
    spec = importlib.util.spec_from_file_location("gen_cli_reference", REPO / "scripts" / "gen_cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


README_MAX_LINES = 200


def _first_code_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```\w*\n(.*?)```", text, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_run_and_test_commands() -> None:
    assert _first_code_block() == [
        "pip install -e . && python -m orchestrator harness_specs/tiny_lightning.py",
        "pip install -e '.[test,megatron]' && pytest",
    ]


def test_ci_runs_the_readme_commands() -> None:
    script = (REPO / ".ci" / "run").read_text()
    extracted = subprocess.run(
        ["bash", "-c", "awk '/^```/{n++; next} n==1' README.md"], capture_output=True, text=True, cwd=REPO
    ).stdout.splitlines()
    assert extracted == _first_code_block()
    assert "README.md" in script and "pytest collected no tests" in script


def test_docs_document_every_exit_code() -> None:
    text = (REPO / "docs" / "reference" / "exit-codes.md").read_text()
    for code, meaning in DESCRIPTIONS.items():
        assert f"| {int(code)} | {meaning} |" in text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=240,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    assert "WARNING" not in build.stderr, build.stderr[-4000:]
    return out


def _text(html: Path) -> str:
    return html.read_text(encoding="utf-8").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_site_builds_strictly_with_every_page_in_the_nav(site: Path) -> None:
    pages = sorted(p.relative_to(REPO / "docs") for p in (REPO / "docs").rglob("*.md"))
    nav = (REPO / "mkdocs.yml").read_text()
    for page in pages:  # mkdocs --strict fails on omitted files too; this names the page
        assert str(page) in nav, f"{page} is not in mkdocs.yml's nav"
        folder = page.parent if page.name == "index.md" else page.with_suffix("")
        assert (site / folder / "index.html").exists(), page


def test_cli_reference_lists_every_option_of_every_command(site: Path) -> None:
    reference = _text(site / "reference" / "cli" / "index.html")
    generator = _generator()
    commands = generator.parsers()
    assert len(commands) >= 6
    for command, _, build in commands:
        assert command in reference, command
        for option in generator.option_names(build()):
            assert f"<code>{option}" in reference or f", {option}" in reference, (command, option)
    assert "--version" in reference


def test_schema_and_diagnosis_catalog_are_in_the_docs(site: Path) -> None:
    assert (site / "reference" / "report.schema.json").read_text() == (
        REPO / "orchestrator" / "report" / "report.schema.json"
    ).read_text()
    fields = _text(site / "reference" / "report-schema" / "index.html")
    for field in ("schema_version", "exit_code", "diagnosis", "verdict"):
        assert f"<code>{field}</code>" in fields, field
    causes = _text(site / "verdict" / "causes" / "index.html")
    for cause in CATALOG:
        assert f"<code>{cause['id']}</code>" in causes, cause["id"]


def test_readme_is_short_and_links_into_the_docs() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert links, "the README links into the docs"
    for link in links:
        assert (REPO / link).exists(), link


def test_version_is_the_installed_package_version() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"stop-and-go {importlib.metadata.version('stop-and-go')}\n"
