"""The stop-and-go orchestrator: the parent process. It never imports torch or lightning.

Run ``python -m orchestrator SPEC`` (or ``stop-and-go SPEC``); see ``orchestrator.cli``.
The file protocol it shares with the workers is ``orchestrator.protocol``.
"""
