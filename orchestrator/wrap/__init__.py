"""Zero-code mode, the parent side: ``stop-and-go run [options] -- SCRIPT [ARGS...]``.

The run is the spec run's (``orchestrator.run.runner.Orchestrator``); only the command
torchrun runs differs: ``workers.wrap.run`` with the user's script and arguments.
Torch-free, like the rest of the orchestrator.
"""
