"""The one recorder every adapter feeds: what a rank records for the judge, and how it is written.

- ``fingerprint``: digests and norms of state tensors, on their own device (full or sampled depth);
- ``state``: the rank's state groups and their per-step samples (``state/<phase>/rankR/samples.bin``);
- ``ledger``: every batch trained, for the exactly-once ledger and the per-step batch facts;
- ``steps``: a trajectory entry per optimizer step from hook events (plain loops, Hugging Face).

The adapters: Lightning callbacks (``workers.callbacks``), PyTorch's global hooks
(``workers.plain``), and the ones that follow; spec mode and zero-code mode alike.
"""
