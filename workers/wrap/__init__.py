"""Zero-code mode, the torchrun side: run an unmodified training script as one phase.

``workers.wrap.run`` is what torchrun starts instead of ``workers.entry``: it runs the
user's script in-process; ``workers.wrap.factory`` is the
``lightning.pytorch.callbacks_factory`` entry point that adds the harness's callbacks to
every ``Trainer`` the script builds (nothing outside a wrapped phase).
"""
