"""Test spec: two harness classes, so the orchestrator needs --harness."""

from harness_specs.tiny_lightning import TinyLightningHarness


class FirstHarness(TinyLightningHarness):
    pass


class SecondHarness(TinyLightningHarness):
    pass
