"""Test spec: the default spec plus ``jitter``, a float metric with run-to-run noise.

``jitter`` is 1 plus up to 1e-4 of true randomness per reading, like a float reduced in a
nondeterministic order. The default tolerance (rtol 1e-6) fails it; a calibrated or
pinned tolerance passes it.
"""

import random
from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness

NOISE = 1e-4
_entropy = random.SystemRandom()


def get_jitter(trainer: Any, module: Any) -> float:
    return 1.0 + NOISE * _entropy.uniform(-1.0, 1.0)


class NoisyMetricHarness(TinyLightningHarness):
    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "noisy_metric")
        super().__init__(root_dir, extra_metrics_dict={"jitter": get_jitter}, **kwargs)
