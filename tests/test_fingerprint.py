"""State fingerprints on the tensors' device: full depth at checkpoints, bounded samples per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.judge.state_compare import compare_state
from orchestrator.judge.state_samples import read_samples, records_path, samples_dir
from workers.record import fingerprint as fp
from workers.record.state import StateRecorder, state_groups


def _nudged(tensor: torch.Tensor, index: int) -> torch.Tensor:
    out = tensor.clone()
    flat = out.view(-1)
    flat[index] = torch.nextafter(flat[index], torch.tensor(float("inf"), dtype=tensor.dtype))
    return out


def test_full_digest_sees_every_bit_and_every_move() -> None:
    tensor = torch.randn(3000, 700)  # 2.1M elements: more than one chunk
    digest = fp.full_digest([tensor])
    assert fp.full_digest([tensor.clone()]) == digest
    assert fp.full_digest([_nudged(tensor, 2_000_001)]) != digest  # one ulp, in the second chunk
    swapped = tensor.clone()
    swapped.view(-1)[[5, 6]] = swapped.view(-1)[[6, 5]]
    assert fp.full_digest([swapped]) != digest  # the same values in another place
    assert fp.full_digest([tensor.reshape(700, 3000)]) != digest  # shape is part of it
    for dtype in (torch.bfloat16, torch.float16, torch.float64, torch.int64, torch.bool, torch.uint8):
        small = torch.arange(10).to(dtype)
        assert fp.full_digest([small]) == fp.full_digest([small.clone()])
    assert fp.full_digest([torch.arange(10.0)]) != fp.full_digest([torch.arange(10.0).double()])


def test_full_norm_is_exact_in_float64() -> None:
    tensors = [torch.randn(1500, 1000), torch.randn(7, dtype=torch.bfloat16), torch.arange(3)]
    expected = sum(float(t.double().pow(2).sum()) for t in tensors[:2]) ** 0.5  # ints do not count
    assert fp.tensor_norm(tensors) == pytest.approx(expected, rel=1e-12)


def test_sampled_depth_looks_at_a_bounded_set_of_elements() -> None:
    big = torch.randn(4_000_000)
    k = fp.per_tensor_samples(1)
    with fp.sampled():
        [values] = fp.samples([big], k)
        digest = fp.tensor_digest([big])
        norm = fp.tensor_norm([big])
    assert values.numel() == k < big.numel()
    stride = big.numel() // k
    assert torch.equal(values, big[: stride * k : stride])  # evenly spread over the tensor
    assert norm == pytest.approx(float(big.double().norm()), rel=0.05)  # an estimate from the samples
    with fp.sampled():
        assert fp.tensor_digest([_nudged(big, stride * 3)]) != digest  # a sampled element
        assert fp.tensor_digest([big.clone()]) == digest
    small = torch.randn(100)
    with fp.sampled():
        assert fp.tensor_norm([small]) == pytest.approx(float(small.double().norm()), rel=1e-12)  # all of it


def test_samples_are_gathered_once_per_step_and_again_after_a_change() -> None:
    tensor = torch.randn(50_000)
    with fp.sampled():
        first = fp.samples([tensor], 64)[0]
        assert fp.samples([tensor], 64)[0] is first  # shared by the digest, the norm and the record
        tensor.mul_(2.0)  # an optimizer step in place: the version counter moves
        assert torch.equal(fp.samples([tensor], 64)[0], first * 2.0)
    assert not fp.is_sampled()


def _trained(width: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.BatchNorm1d(width), torch.nn.Linear(width, 1))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, width)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_the_record_holds_what_the_digests_covered_and_survives_a_torn_write(tmp_path: Path) -> None:
    model, optimizer = _trained(512)
    recorder = StateRecorder(tmp_path, "go", 0)
    for step in (1, 2):
        with fp.sampled():
            recorder.record(step, state_groups(model, [optimizer]))
    with records_path(samples_dir(tmp_path, "go", 0)).open("ab") as out:
        out.write(b"\x01" * 20)  # a record torn by a kill
    found = read_samples(tmp_path, "go", 0)
    assert sorted(found) == [1, 2]
    names = set(found[2])
    assert {"weights/0.weight", "buffers/1.running_mean", "buffers/1.num_batches_tracked"} <= names
    assert "optimizer/0.0.weight.exp_avg_sq" in names
    k = fp.per_tensor_samples(len(list(model.parameters())))
    weight = model[0].weight.detach().reshape(-1)
    stride = weight.numel() // k
    assert np.array_equal(found[2]["weights/0.weight"], weight[: stride * k : stride].double().numpy())
    size = records_path(samples_dir(tmp_path, "go", 0)).stat().st_size
    assert size < 2 * 8 * 3 * fp.SAMPLE_BUDGET + 200  # two steps, three groups: bounded, not the model's size


def test_the_judge_finds_the_tensor_that_differs_beyond_tolerance(tmp_path: Path) -> None:
    model, optimizer = _trained(256)
    for phase, run in (("continuous", tmp_path / "ref"), ("go", tmp_path / "go")):
        if phase == "go":
            with torch.no_grad():
                model[2].weight.mul_(1.01)  # 1%: a real difference
                model[0].weight.add_(1e-9)  # far inside the tolerance
        with fp.sampled():
            StateRecorder(run, phase, 0).record(3, state_groups(model, [optimizer]))
    found = compare_state(tmp_path / "ref", tmp_path / "go", "go", "continuous", "weights_digest", 0, [3])
    assert found is not None and not found.within and found.tensor == "2.weight"
    assert found.max_rel == pytest.approx(0.01, rel=1e-3)
    same = compare_state(tmp_path / "ref", tmp_path / "go", "go", "continuous", "optimizer_state_digest", 0, [3])
    assert same is not None and same.within and same.max_abs == 0.0


@pytest.mark.gpu
def test_on_a_gpu_the_fingerprints_stay_on_the_device_and_match_the_cpu_ones() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import psutil

    cpu = [torch.randn(2000, 1000), torch.randn(4096, dtype=torch.bfloat16), torch.arange(7)]
    gpu = [t.cuda() for t in cpu]
    assert fp.full_digest(gpu) == fp.full_digest(cpu)  # the same bits give the same digest anywhere
    assert fp.tensor_norm(gpu) == pytest.approx(fp.tensor_norm(cpu), rel=1e-12)
    with fp.sampled():
        assert fp.tensor_digest(gpu) == fp.tensor_digest(cpu)
    big = torch.randn(256, 1 << 20, device="cuda")  # 1 GiB on the device
    fp.full_digest([big])  # warm: the chunk weights, the allocator
    rss = psutil.Process().memory_info().rss
    fp.full_digest([big])
    fp.tensor_norm([big])
    with fp.sampled():
        fp.tensor_digest([big])
        fp.tensor_norm([big])
    assert psutil.Process().memory_info().rss - rss < 64 << 20  # nothing of its size came to the host


def test_a_sharded_tensor_is_fingerprinted_by_this_rank_s_shard(tmp_path: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        local = torch.randn(64, 8)
        sharded = distribute_tensor(local, mesh, [Shard(0)])  # FSDP2's parameters are such DTensors
        assert fp.full_digest([sharded]) == fp.full_digest([local])
        assert fp.tensor_norm([sharded]) == pytest.approx(fp.tensor_norm([local]), rel=1e-12)
        with fp.sampled():
            assert fp.tensor_digest([sharded]) == fp.tensor_digest([local])
    finally:
        dist.destroy_process_group()
