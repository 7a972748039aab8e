"""Mutants of ``harness_specs/megatron_gpt_tiny.py``: resume bugs of the megatron backend.

Each declares the metric that must catch it (``CAUGHT_BY``) and its bug class
(``BUG_CLASS``); run them with ``python -m orchestrator self-test --mutants-dir
harness_specs/megatron_mutants --control harness_specs/megatron_gpt_tiny.py``.
"""
