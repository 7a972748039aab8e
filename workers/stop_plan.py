"""Where a stopping phase stops: ``--kill-at``'s step, and what is wrong with one it cannot take.

The last step of a run bounded by epochs over a loader without a length is not known
before training (``workers.checkpoints.last_training_step`` is None): a ``--kill-at`` step
is then taken as given and checked when training ends.
"""

from __future__ import annotations

import random

import lightning.pytorch as pl

from workers.checkpoints import describe_last_step


class StopPlanError(ValueError):
    """The phase plan cannot be carried out by this spec (e.g. ``--kill-at`` past the last step).

    The worker entry reports it as a spec error: one line, exit 2.
    """


def resolve_kill_at(kill_at: str | None, first_step: int, max_steps: int | None, label: str) -> int | None:
    """The step to stop at: ``"7"`` is step 7, ``"random:SEED"`` draws one in [first_step, max_steps).

    The draw depends only on the seed and the label, so every rank draws the same step.
    ``max_steps`` None (the last step is not known before training) allows no draw.
    """
    if not kill_at:
        return None
    if kill_at.startswith("random:"):
        seed = int(kill_at.split(":", 1)[1])
        if max_steps is None:
            raise StopPlanError(
                f"{label}: --kill-at random needs the run's last step, which is not known before training "
                "(a train loader without a length and no max_steps); give --kill-at STEP"
            )
        if max_steps <= first_step:
            raise ValueError(f"{label}: no step left to stop at (from step {first_step}, max_steps={max_steps})")
        return random.Random(f"{seed}:{label}").randrange(first_step, max_steps)
    return int(kill_at)


def kill_step_not_reached(
    trainer: pl.Trainer, kill_step: int | None, label: str, first_step: int, last_step: int | None
) -> StopPlanError | None:
    """At train end: the error for a ``--kill-at`` step training never reached, else None.

    ``last_step`` is what was known at train start (None: not known, so the step was taken as given).
    """
    if kill_step is None or trainer.global_step >= kill_step:
        return None
    why = f"the run's last step was {describe_last_step(trainer)}" if last_step is None else "training stopped early"
    return StopPlanError(
        f"--kill-at {kill_step}: {label}'s training ended at step {trainer.global_step}, before reaching it "
        f"({why}); choose a step in [{first_step}, {trainer.global_step - 1}]"
    )
