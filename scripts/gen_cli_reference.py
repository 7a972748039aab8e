"""The docs' generated pages: the CLI reference from the argparse parsers, and the report.json schema.

An MkDocs hook (``hooks:`` in ``mkdocs.yml``): at every build it adds
``reference/cli.md`` (every command's options, read from the parsers the commands use),
``reference/report-schema.md`` (the fields of ``report.json``) and
``reference/report.schema.json`` (the schema file the package ships), and fills the
diagnosis catalog's table on ``verdict/causes.md``, so the reference cannot drift from the
code. ``python scripts/gen_cli_reference.py`` prints the CLI page.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # mkdocs runs this file by path, from any install of the package
    sys.path.insert(0, str(REPO))


def _doctor_parser() -> argparse.ArgumentParser:
    # The doctor's module imports torch (seconds, minutes under load) for its checks; its
    # build_parser needs only argparse, so it is compiled alone from the source.
    source = (REPO / "workers" / "doctor" / "__main__.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_parser")
    namespace: dict[str, Any] = {"argparse": argparse}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "workers/doctor/__main__.py", "exec"), namespace)
    return namespace["build_parser"]()


def parsers() -> list[tuple[str, str, Callable[[], argparse.ArgumentParser]]]:
    """Every command's parser: (command, what it does, the function that builds it)."""
    from orchestrator.cli import cli_parser
    from orchestrator.slurm.sbatch import build_parser as sbatch_parser
    from orchestrator.suite.runner import build_parser as suite_parser
    from orchestrator.suite.selftest import build_parser as selftest_parser
    from orchestrator.wrap.cli import build_parser as run_parser

    return [
        ("stop-and-go SPEC", "run a spec: stop, kill, go, continuous reference, verdict", cli_parser),
        ("stop-and-go run", "the same for an unmodified training script (zero code)", run_parser),
        ("stop-and-go doctor", "what in a spec's setup will not resume, before any training", _doctor_parser),
        ("stop-and-go suite", "many specs x scenarios, one JUnit XML", suite_parser),
        ("stop-and-go self-test", "prove the checker catches every mutant of the catalog", selftest_parser),
        ("stop-and-go sbatch", "submit a run as a Slurm job", sbatch_parser),
    ]


def option_names(parser: argparse.ArgumentParser) -> list[str]:
    """Every documented option string of ``parser`` (``--timeout``, ``-v``, ``-h`` ...).

    Options whose help is ``argparse.SUPPRESS`` are left out, as ``--help`` leaves them out.
    """
    return [
        name for action in parser._actions if action.help is not argparse.SUPPRESS for name in action.option_strings
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _action_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    if action.option_strings:
        name = ", ".join(action.option_strings)
        if action.nargs != 0:
            name += " " + formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    else:
        name = formatter._format_args(action, formatter._get_default_metavar_for_positional(action))
    text = formatter._expand_help(action) if action.help else ""
    return f"| `{_cell(name)}` | {_cell(text)} |"


def render_parser(command: str, summary: str, parser: argparse.ArgumentParser) -> str:
    """One command's section: usage, description, every option by group, epilog."""
    lines = [f"## `{command}`", "", f"{summary[0].upper()}{summary[1:]}.", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += [parser.description.strip(), ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| option | what it does |", "| --- | --- |"]
        lines += [_action_row(parser, a) for a in actions]
        lines.append("")
    if parser.epilog:
        lines += ["```text", parser.epilog.strip(), "```", ""]
    return "\n".join(lines)


def render_cli() -> str:
    """The whole CLI reference page."""
    out = [
        "# CLI reference",
        "",
        "Generated from the commands' own argparse parsers at every docs build "
        "(`scripts/gen_cli_reference.py`); `--help` on any command prints the same.",
        "`stop-and-go` and `python -m orchestrator` are the same command.",
        "",
    ]
    for command, summary, build in parsers():
        out.append(render_parser(command, summary, build()))
    return "\n".join(out)


def _type_text(node: dict[str, Any]) -> str:
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    if "oneOf" in node:
        return " or ".join(_type_text(option) for option in node["oneOf"])
    kind = node.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "items" in node:
        kinds = [f"array of {_type_text(node['items'])}" if k == "array" else k for k in kinds]
    return " or ".join(kinds)


def _fields_table(node: dict[str, Any]) -> list[str]:
    required = set(node.get("required", []))
    rows = ["| field | type | required | what |", "| --- | --- | --- | --- |"]
    for name, field in node.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_cell(_type_text(field))} | {'yes' if name in required else ''} "
            f"| {_cell(field.get('description', ''))} |"
        )
    return rows


def render_schema() -> str:
    """The page that documents report.json from its schema."""
    from orchestrator.report.schema import SCHEMA_VERSION, load_schema

    schema = load_schema()
    lines = [
        "# report.json schema",
        "",
        f'`report.json` carries `"schema_version": {SCHEMA_VERSION}`. {schema["description"]}',
        "",
        "The schema (JSON Schema draft 2020-12) ships in the package as "
        "`orchestrator/report/report.schema.json` and here: [report.schema.json](report.schema.json). "
        "Load it from an installed package with `orchestrator.report.schema.load_schema()`.",
        "",
        "## Top level",
        "",
        *_fields_table(schema),
        "",
    ]
    for name, node in schema.get("$defs", {}).items():
        lines += [f"## {name}", "", node.get("description", ""), "", *_fields_table(node), ""]
    return "\n".join(lines)


def render_causes(examples: str = "") -> str:
    """The diagnosis catalog as a table: every cause id with its cause and its fix.

    An id with a real example on the page (a ``### id`` heading in ``examples``) links to it.
    """
    from orchestrator.judge.causes import CATALOG

    rows = ["| cause_id | cause | fix |", "| --- | --- | --- |"]
    for cause in CATALOG:
        name = f"`{cause['id']}`"
        if f"\n### {cause['id']}\n" in examples:
            name = f"[{name}](#{cause['id']})"
        rows.append(f"| {name} | {_cell(cause['cause'])} | {_cell(cause['fix'])} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: fills the causes page's catalog table from the code."""
    if page.file.src_uri == "verdict/causes.md":
        markdown = markdown.replace("<!-- CAUSE CATALOG -->", render_causes(markdown))
    return markdown


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: adds the generated pages to the site's files."""
    from mkdocs.structure.files import File

    from orchestrator.report.schema import schema_text

    files.append(File.generated(config, "reference/cli.md", content=render_cli()))
    files.append(File.generated(config, "reference/report-schema.md", content=render_schema()))
    files.append(File.generated(config, "reference/report.schema.json", content=schema_text()))
    return files


if __name__ == "__main__":
    print(render_cli())
