"""Prints what the per-step recording costs a rank, bare vs instrumented, measured in one run (issue 27).

    python benchmarks/recording_cost.py [--sizes 1,25,100] [--steps N] [--repeat R] [--only lightning|plain]
                                       [--device cuda]

For an MLP of about 1M, 25M and 100M parameters (Adam, batch 32, CPU), each in its own
process, trained bare and with the per-step recording a phase run by the tool does:

- ``lightning``: a ``lightning.pytorch.Trainer`` with the harness's
  ``MetricsTrajectoryCallback`` and every built-in metric (the digests and norms of the
  weights, buffers and optimizer state, RNG digests, learning rates, the batch ledger,
  the state record);
- ``plain``: a plain PyTorch loop under the zero-code hooks of ``stop-and-go run``
  (``workers.plain``: per step the loss, learning rates, batch ledger, state digests and
  norms at the sampled depth, RNG digests and the state record).

Printed per row: the median step time bare and instrumented (the median over ``--repeat``
interleaved pairs of processes of each one's median step) and their ratio, the peak
host memory (max RSS) of each process and the difference, and the bytes the recording
wrote to the run directory per step (no checkpoints are saved in either). Also the cost
of one full-depth fingerprint (every byte, as at a checkpoint or a resume) of the state.
``--device cuda`` runs both on the GPU (``scripts/device_check.sh``), where the state
never leaves the device. No thresholds: figures to read (the issue's targets: a ratio <= 1.05 at >= 25M
parameters, <= 64 MB extra peak memory, <= 1 MB a step).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FEATURES, BATCH, LAYERS = 256, 32, 4


def _params(width: int) -> int:
    # An input layer, LAYERS - 1 square layers and a one-unit output layer, with biases.
    return FEATURES * width + width + (LAYERS - 1) * (width * width + width) + width + 1


def _width(millions: float) -> int:
    """The width whose MLP has about ``millions`` million parameters."""
    width = int((millions * 1e6 / (LAYERS - 1)) ** 0.5)
    while _params(width) > millions * 1e6 and width > 1:
        width -= 1
    return width


DEVICE = "cpu"
FULL_S: dict[str, float] = {}  # the instrumented plain run's full-depth fingerprint time


def _sync() -> None:
    import torch

    if DEVICE != "cpu":
        torch.cuda.synchronize()  # a step's time includes its kernels, not only their launch


def _model(millions: float):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    torch.manual_seed(0)
    width = _width(millions)
    layers: list[nn.Module] = [nn.Linear(FEATURES, width), nn.ReLU()]
    for _ in range(LAYERS - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1)).to(DEVICE)


def _batches(steps: int):  # type: ignore[no-untyped-def]
    import torch

    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, FEATURES, generator=generator).to(DEVICE),
             torch.randn(BATCH, 1, generator=generator).to(DEVICE)) for _ in range(steps)]  # fmt: skip


def _run_plain(millions: float, steps: int, instrumented: bool, out: Path) -> list[float]:
    import torch

    from workers.plain import hooks
    from workers.wrap.config import WrapConfig

    if instrumented:  # the zero-code hooks of ``stop-and-go run`` on a plain loop, as in a reference run
        config = WrapConfig(label="continuous", mode="continuous", metadata_dir=str(out), ckpt_dir=str(out))
        run = hooks.install(config, str(out))
    model = _model(millions)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for x, y in _batches(steps):
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync()
        times.append(time.perf_counter() - start)
    if instrumented:
        run.recorder.settle()
        run.recorder.flush()
        hooks.stand_down()
        # As at a checkpoint save or a resume: every byte, on the same state.
        FULL_S["s"] = _full_fingerprint_s(model, optimizer)
    return times


def _run_lightning(millions: float, steps: int, instrumented: bool, out: Path) -> list[float]:
    import lightning.pytorch as pl
    import torch

    from workers.callbacks import MetricsTrajectoryCallback
    from workers.metrics import builtin_metrics

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model(millions)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.Adam(self.parameters(), lr=1e-4)

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []

        def on_train_batch_start(self, *args) -> None:  # type: ignore[no-untyped-def]
            _sync()
            self.starts.append(time.perf_counter())

        def on_train_end(self, *args) -> None:  # type: ignore[no-untyped-def]
            _sync()
            self.starts.append(time.perf_counter())

    timer = StepTimer()
    callbacks: list[pl.Callback] = [timer]
    if instrumented:
        callbacks.insert(0, MetricsTrajectoryCallback(out, builtin_metrics(), phase="bench"))
    trainer = pl.Trainer(
        max_steps=steps, accelerator="gpu" if DEVICE != "cpu" else "cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
        num_sanity_val_steps=0,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(_batches(steps), batch_size=None)
    trainer.fit(Module(), loader)
    return [b - a for a, b in zip(timer.starts, timer.starts[1:], strict=False)]


def _child(kind: str, millions: float, steps: int, instrumented: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="stop-and-go-recording-") as tmp:
        out = Path(tmp)
        run = _run_lightning if kind == "lightning" else _run_plain
        times = run(millions, steps, instrumented, out)
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        full_s = FULL_S.get("s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "peak_mb": peak_mb, "written": written, "full_s": full_s}))


def _full_fingerprint_s(model, optimizer) -> float:  # type: ignore[no-untyped-def]
    from workers.record.fingerprint import tensor_digest, tensor_norm
    from workers.record.state import state_groups

    _sync()
    start = time.perf_counter()
    for named in state_groups(model, [optimizer]).values():
        tensors = [t for _, t in named]
        tensor_digest(tensors)
        tensor_norm(tensors)
    _sync()
    return time.perf_counter() - start


def _measure(kind: str, millions: float, steps: int, instrumented: bool) -> dict:
    command = [sys.executable, __file__, "--child", kind, str(millions), str(steps), str(int(instrumented)), DEVICE]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {millions}M failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    global DEVICE
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        DEVICE = sys.argv[6]
        _child(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), bool(int(sys.argv[5])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,25,100", help="model sizes, millions of parameters")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="bare/instrumented pairs per row (medians of medians)")
    parser.add_argument("--only", choices=["lightning", "plain"])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU path")
    args = parser.parse_args()
    DEVICE = args.device
    kinds = [args.only] if args.only else ["lightning", "plain"]
    header = f"{'loop':<10}{'params':>8}  {'bare step':>10} {'instr step':>10} {'ratio':>6}  "
    print(header + f"{'bare peak':>10} {'instr peak':>10} {'extra':>8}  {'run dir/step':>12}  full fingerprint")
    for kind in kinds:
        for size in (float(s) for s in args.sizes.split(",")):
            # Interleaved and repeated: a run's neighbours on a busy machine affect both alike.
            bares, instrs = [], []
            for _ in range(args.repeat):
                bares.append(_measure(kind, size, args.steps, False))
                instrs.append(_measure(kind, size, args.steps, True))
            skip = 2  # the first steps allocate the optimizer state and warm the allocator
            t_bare = statistics.median(statistics.median(b["times"][skip:]) for b in bares)
            t_instr = statistics.median(statistics.median(i["times"][skip:]) for i in instrs)
            bare, instr = bares[-1], instrs[-1]
            bare["peak_mb"] = statistics.median(b["peak_mb"] for b in bares)
            instr["peak_mb"] = statistics.median(i["peak_mb"] for i in instrs)
            params = f"{_params(_width(size)) / 1e6:.1f}M"
            full = f"{instr['full_s']:.3f} s" if instr["full_s"] is not None else "-"
            print(
                f"{kind:<10}{params:>8}  {t_bare * 1e3:>8.1f}ms {t_instr * 1e3:>8.1f}ms {t_instr / t_bare:>6.3f}  "
                f"{bare['peak_mb']:>8.0f}MB {instr['peak_mb']:>8.0f}MB {instr['peak_mb'] - bare['peak_mb']:>6.0f}MB  "
                f"{instr['written'] / args.steps / 1024:>10.0f}KB  {full}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
