"""The ``nemo2`` backend: NeMo 2's ``llm.train`` with ``MegatronStrategy``, ``AutoResume``
and ``NeMoLogger``, the seed's own path (install: ``bash scripts/setup_nemo_venv.sh``).

- ``checkpoints``: NeMo's checkpoint layout and the checks that tell a whole checkpoint
  from a torn one (imports neither NeMo nor megatron-core).
- ``backend``: ``NeMo2Backend``, the seed's ``llm.train`` call and ``AutoResume`` choice.
- ``harness``: ``NeMo2StopAndGoHarness``, the seed's base class shape with its ``nemo_logger``.
- ``torn_save``: ``--kill-during-save`` for NeMo's ``weights/`` directories.
"""

from workers.backends.nemo2.backend import NeMo2Backend, auto_resume, seed_model_checkpoint
from workers.backends.nemo2.harness import NeMo2StopAndGoHarness

__all__ = ["NeMo2Backend", "NeMo2StopAndGoHarness", "auto_resume", "seed_model_checkpoint"]
