"""How a worker phase ends other than by finishing: the exceptions the entry points report.

Lightning-free, so that the plain PyTorch instrumentation (``workers.plain``) and the
Lightning callbacks raise the same ones and ``workers.wrap.run`` reports them alike.
"""

from __future__ import annotations


class StopAndGoException(Exception):
    """Raised to end the stop run once its checkpoint and metadata are saved."""


class ResumeMismatchError(AssertionError):
    """The resumed state differs from the state saved at the stop checkpoint."""


class NoCheckpointError(Exception):
    """The stop phase reached no checkpoint it could stop at: the script checkpoints too rarely."""


class NotResumedError(Exception):
    """The go phase started training from scratch instead of from the stop's checkpoint."""


class TornCheckpointError(Exception):
    """Go loads from the checkpoint the stop was killed while writing (``--kill-during-save``)."""
