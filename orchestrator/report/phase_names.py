"""What the phase labels mean, said where a person first meets them.

``stop``, ``go`` and the ``continuous`` reference explain themselves; ``go1``, ``go2`` ...
(a resumed phase that is stopped and killed again, so that the next one resumes once
more) do not. The first event that names one, the summary's phase table and a one-line
error that names one say what it is; report.json carries the meanings as
``phase_meanings``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.protocol import PhasePlan

_RESUMED_AND_STOPPED = re.compile(r"go(\d+)")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")


def phase_meaning(label: str, later_epoch: bool = False) -> str | None:
    """What ``go1``, ``go2`` ... is (``later_epoch``: it stops at a later epoch's checkpoint); None for the rest."""
    match = _RESUMED_AND_STOPPED.fullmatch(label)
    if match is None:
        return None
    n = int(match.group(1))
    nth = _ORDINALS[n - 1] if 0 < n <= len(_ORDINALS) else f"{n}th"
    return f"the {nth} resumed phase, stopped again at a later {'epoch' if later_epoch else 'step'}"


def phase_meanings(plans: Iterable[PhasePlan]) -> dict[str, str]:
    """The meaning of every phase label in ``plans`` that needs one."""
    meanings = {}
    for plan in plans:
        meaning = phase_meaning(plan.label, plan.stop_in_later_epoch)
        if meaning:
            meanings[plan.label] = meaning
    return meanings


def explain_first(text: str, meanings: Mapping[str, str], explained: set[str]) -> str:
    """``text`` with its first mention of each label not in ``explained`` followed by the meaning.

    ``explained`` gains the labels explained here, so that each is explained once.
    """
    for label, meaning in meanings.items():
        match = None if label in explained else re.search(rf"\b{re.escape(label)}\b", text)
        if match:
            text = f"{text[: match.end()]} ({meaning}){text[match.end() :]}"
            explained.add(label)
    return text


def meaning_note(text: str, meanings: Mapping[str, str]) -> str:
    """`` (go1: the first resumed phase, ...)`` for the labels ``text`` names; empty if none."""
    named = [f"{label}: {meaning}" for label, meaning in meanings.items() if re.search(rf"\b{label}\b", text)]
    return f" ({'; '.join(named)})" if named else ""


def legend(labels: Iterable[str], meanings: Mapping[str, str]) -> list[str]:
    """``go1 = the first resumed phase, ...`` lines for the labels of a phase table."""
    return [f"{label} = {meanings[label]}" for label in labels if label in meanings]


class ExplainingEvents:
    """A ``RunEvents`` sink that explains each phase label in the first event naming it."""

    def __init__(self, inner: Any, meanings: Mapping[str, str]) -> None:
        self.inner = inner
        self.meanings = dict(meanings)
        self._explained: set[str] = set()

    def event(self, kind: str, phase: str | None, message: str, **data: Any) -> None:
        """Forwards the event, its first mention of a phase label explained."""
        self.inner.event(kind, phase, explain_first(message, self.meanings, self._explained), **data)

    def worker_line(self, phase: str, rank: int | None, line: str) -> None:
        """Forwards a worker's line unchanged."""
        self.inner.worker_line(phase, rank, line)

    def __getattr__(self, name: str) -> Any:  # the sink's own methods (print_summary, start ...)
        return getattr(self.inner, name)
