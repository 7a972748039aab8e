"""Reading a nightly suite: a TOML file of specs x scenarios, or a directory of specs.

A suite file (paths relative to the file)::

    name = "nightly"                  # optional; default: the file's stem
    specs = ["../harness_specs/tiny_lightning.py", "../harness_specs/broken_scheduler.py"]

    [defaults]                        # optional; applies to every scenario
    timeout = 600                     # seconds for the whole entry (and each phase)
    nproc_per_node = 1

    [[scenario]]                      # optional; default: one scenario "default"
    name = "sigkill"
    kill_signal = "KILL"

    [[scenario]]
    name = "sigterm"
    kill_signal = "TERM"
    grace = 5
    args = ["--no-reference"]         # any other orchestrator options, verbatim

Every spec runs under every scenario: one *entry* each, named ``<spec stem>-<scenario>``.
Scenario keys: ``kill_signal``, ``grace``, ``nproc_per_node``, ``nnodes``, ``timeout``,
``reference`` (false = ``--no-reference``), ``harness`` and ``args`` (a list of extra
command-line options, e.g. a kill step or cycle count where the orchestrator has them).

An item of ``specs`` can also be a training script's command line instead of a spec
(``stop-and-go run``, paths relative to the file)::

    specs = [{ command = ["../scripts/train.py", "--max-steps", "8"], go_args = "--ckpt_path {checkpoint}" }]

Its entries are named ``<script stem>-<scenario>`` (or ``name = ...`` in the table).

A directory suite runs every ``*.py`` spec in it (not starting with ``_``) once, with
the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

DEFAULT_TIMEOUT_S = 600.0
# Scenario keys and the orchestrator option each becomes.
_OPTION_KEYS = {
    "kill_signal": "--kill-signal",
    "grace": "--grace",
    "nproc_per_node": "--nproc-per-node",
    "nnodes": "--nnodes",
    "harness": "--harness",
}
_KNOWN_KEYS = {*_OPTION_KEYS, "name", "timeout", "reference", "args"}


class SuiteError(Exception):
    """The suite file or directory is unusable; the message is one line."""


@dataclass
class Entry:
    """One spec under one scenario: what the suite runs as one orchestrator process."""

    name: str
    spec: Path
    scenario: str
    timeout_s: float
    options: list[str] = field(default_factory=list)
    nproc_per_node: int = 2
    nnodes: int = 1
    # A script entry (``stop-and-go run``): the script's arguments and --go-args; None for a spec.
    script_args: list[str] | None = None
    go_args: str | None = None

    def orchestrator_args(self, run_dir: Path) -> list[str]:
        """The ``python -m orchestrator`` arguments of this entry."""
        common = ["--run-dir", str(run_dir), "--timeout", f"{self.timeout_s:g}", *self.options]
        if self.script_args is None:
            return [str(self.spec), *common]
        go = ["--go-args", self.go_args] if self.go_args else []
        return ["run", *common, *go, "--", str(self.spec), *self.script_args]


@dataclass
class Suite:
    """A suite: its name and the entries to run."""

    name: str
    source: Path
    entries: list[Entry]


def load_suite(path: Path) -> Suite:
    """Reads a suite file or directory; raises ``SuiteError`` with a one-line reason."""
    if not path.exists():
        raise SuiteError(f"suite not found: {path}")
    if path.is_dir():
        specs = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        if not specs:
            raise SuiteError(f"suite directory {path} holds no *.py spec")
        entries = [_entry(spec, {"name": "default"}, {}, path) for spec in specs]
        return Suite(path.name, path, entries)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"suite {path} is not valid TOML: {err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(f"cannot read suite {path}: {err}") from err
    unknown = set(data) - {"name", "specs", "defaults", "scenario"}
    if unknown:
        raise SuiteError(f"suite {path}: unknown key(s) {', '.join(sorted(unknown))}")
    specs = data.get("specs")
    if not isinstance(specs, list) or not specs or not all(isinstance(s, (str, dict)) for s in specs):
        raise SuiteError(f"suite {path}: 'specs' must be a non-empty list of paths or {{ command = [...] }} tables")
    defaults = data.get("defaults", {})
    scenarios = data.get("scenario", [{"name": "default"}])
    if not isinstance(defaults, dict) or not isinstance(scenarios, list):
        raise SuiteError(f"suite {path}: [defaults] must be a table and [[scenario]] a list of tables")
    base = path.parent
    entries = []
    for item in specs:
        script = _script_item(item, path) if isinstance(item, dict) else None
        spec_text = script["command"][0] if script else item
        spec = (base / spec_text).resolve()
        if not spec.is_file():
            raise SuiteError(f"suite {path}: {'script' if script else 'spec'} not found: {spec_text}")
        for index, scenario in enumerate(scenarios):
            if not isinstance(scenario, dict):
                raise SuiteError(f"suite {path}: scenario {index + 1} is not a table")
            entry = _entry(spec, scenario, defaults, path, index)
            if script:
                entry.script_args, entry.go_args = list(script["command"][1:]), script.get("go_args")
                entry.name = f"{script.get('name', spec.stem)}-{entry.scenario}"
            entries.append(entry)
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SuiteError(f"suite {path}: duplicate entry name(s) {', '.join(duplicates)}; name the scenarios")
    return Suite(str(data.get("name", path.stem)), path, entries)


def _script_item(item: dict[str, Any], source: Path) -> dict[str, Any]:
    """A ``{ command = [...], go_args = "...", name = "..." }`` item of ``specs``, checked."""
    unknown = set(item) - {"command", "go_args", "name"}
    command = item.get("command")
    if unknown or not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise SuiteError(f"suite {source}: a script item needs command = [SCRIPT, ARGS...] (optional: go_args, name)")
    if not isinstance(item.get("go_args", ""), str):
        raise SuiteError(f"suite {source}: go_args must be a string")
    return item


def _entry(spec: Path, scenario: dict[str, Any], defaults: dict[str, Any], source: Path, index: int = 0) -> Entry:
    merged = {**defaults, **scenario}
    unknown = set(merged) - _KNOWN_KEYS
    if unknown:
        raise SuiteError(f"suite {source}: unknown scenario key(s) {', '.join(sorted(unknown))}")
    scenario_name = str(scenario.get("name", f"scenario{index + 1}"))
    options: list[str] = ["--quiet"]
    for key, flag in _OPTION_KEYS.items():
        if key in merged:
            options += [flag, str(merged[key])]
    if merged.get("reference", True) is False:
        options.append("--no-reference")
    extra = merged.get("args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise SuiteError(f"suite {source}: 'args' must be a list of strings")
    options += extra
    try:
        timeout = float(merged.get("timeout", DEFAULT_TIMEOUT_S))
        nproc = int(merged.get("nproc_per_node", 2))
        nnodes = int(merged.get("nnodes", 1))
    except (TypeError, ValueError) as err:
        raise SuiteError(f"suite {source}: bad number in scenario {scenario_name}: {err}") from err
    if timeout <= 0:
        raise SuiteError(f"suite {source}: timeout must be positive in scenario {scenario_name}")
    return Entry(f"{spec.stem}-{scenario_name}", spec, scenario_name, timeout, options, nproc, nnodes)
