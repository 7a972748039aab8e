"""Fingerprints of state tensors, computed on the tensors' own device.

Two depths, chosen by where a fingerprint is taken:

- **full** (the default; at every checkpoint save and at a resume): every byte counts. The
  digest is an integer checksum of each tensor's bit pattern, computed with torch ops on
  the tensor's device in bounded chunks, and fetched as one small vector; the norm is a
  float64 L2 norm accumulated chunk by chunk. Nothing of the size of the model is copied
  to the host, and the extra memory is a few chunks whatever the model's size.
- **sampled** (after every optimizer step, ``with sampled():``): a fixed, evenly strided
  set of each tensor's elements (all of them for a small tensor; ``per_tensor_samples``),
  gathered on the device into one vector per device and dtype and fetched at once. The
  digest covers those elements bit for bit, the norm is the L2 norm estimated from them,
  and ``workers.record.state`` writes the same elements for the per-tensor judgement
  within tolerance. The cost per step depends on the number of tensors, not their size.

Within one ``sampled()`` block the samples of a tensor are gathered once and shared by the
digest, the norm and the state record (keyed by the tensor and its version counter, which
any in-place change bumps).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch

DIGEST_CHARS = 16
SAMPLE_BUDGET = 16384
"""Sampled elements per group of tensors (weights, buffers, optimizer state) and step."""
MIN_SAMPLES_PER_TENSOR = 32
CHUNK_ELEMENTS = 1 << 20
"""Elements per chunk of a full pass: bounds the extra memory to a few chunks (8 MiB each)."""

_INT_VIEWS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}

_weights: dict[torch.device, torch.Tensor] = {}

_cache: ContextVar[dict[int, tuple[torch.Tensor, int, int, torch.Tensor]] | None] = ContextVar(
    "stop_and_go_samples", default=None
)


@contextmanager
def sampled() -> Iterator[None]:
    """Within the block, ``tensor_digest`` and ``tensor_norm`` work on samples (per-step records)."""
    token = _cache.set({})
    try:
        yield
    finally:
        _cache.reset(token)


def is_sampled() -> bool:
    """Whether fingerprints are being taken at the sampled depth."""
    return _cache.get() is not None


def per_tensor_samples(count: int) -> int:
    """Samples per tensor in a group of ``count`` tensors."""
    return max(MIN_SAMPLES_PER_TENSOR, SAMPLE_BUDGET // max(count, 1))


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    if hasattr(tensor, "to_local"):  # a DTensor (FSDP2, tensor parallel): this rank's shard
        tensor = tensor.to_local()
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return tensor.reshape(-1)  # a view for the contiguous tensors parameters and moments are


def _sample_view(tensor: torch.Tensor, k: int) -> torch.Tensor:
    flat = _flat(tensor)
    n = flat.numel()
    if n <= k:
        return flat
    stride = n // k
    return flat[: stride * k : stride]


def samples(tensors: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Each tensor's ``k`` evenly strided elements (all, if it has fewer), as CPU tensors.

    Gathered on the tensors' devices, one concatenation and one transfer per device and
    dtype. Inside ``sampled()``, a tensor already sampled (unchanged since) is not again.
    """
    cache = _cache.get()
    out: list[torch.Tensor | None] = [None] * len(tensors)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    views: dict[int, torch.Tensor] = {}
    for i, tensor in enumerate(tensors):
        if cache is not None:
            hit = cache.get(id(tensor))
            if hit is not None and hit[0] is tensor and hit[1] == tensor._version and hit[2] == k:
                out[i] = hit[3]
                continue
        view = _sample_view(tensor, k)
        views[i] = view
        groups[(view.device, view.dtype)].append(i)
    for indices in groups.values():
        parts = [views[i] for i in indices]
        joined = (torch.cat(parts) if len(parts) > 1 else parts[0].clone()).cpu()
        for i, part in zip(indices, joined.split([p.numel() for p in parts]), strict=True):
            out[i] = part
            if cache is not None:  # a strong reference: the id cannot be reused while cached
                cache[id(tensors[i])] = (tensors[i], tensors[i]._version, k, part)
    return out  # type: ignore[return-value]


def _header(tensor: torch.Tensor) -> bytes:
    if hasattr(tensor, "to_local"):  # the local shard's shape: what this rank holds
        tensor = tensor.to_local()
    return f"{tensor.dtype}{tuple(tensor.shape)}".encode()


def _bytes(values: torch.Tensor) -> memoryview:
    # A view of the bytes, no copy (hashlib reads any buffer).
    values = values.contiguous()
    return memoryview(values.view(_INT_VIEWS[values.element_size()]).numpy())


def _position_weights(device: torch.device) -> torch.Tensor:
    """A chunk's worth of fixed odd int64 weights, one per position (made once per device)."""
    weights = _weights.get(device)
    if weights is None:
        generator = torch.Generator().manual_seed(0x5709)  # the same weights in every process
        draws = torch.randint(-(2**62), 2**62, (CHUNK_ELEMENTS,), dtype=torch.int64, generator=generator)
        weights = _weights[device] = (draws * 2 + 1).to(device)
    return weights


def _checksums(tensor: torch.Tensor) -> torch.Tensor:
    """Two int64 checksums of the tensor's bit pattern, computed on its device.

    The plain sum of the bit patterns and their sum weighted by a fixed odd number per
    position (the chunk's index mixed in), both modulo 2**64 (int64 arithmetic wraps), so
    the order of the additions does not matter and a moved value changes the second.
    """
    flat = _flat(tensor)
    if not flat.is_contiguous():
        flat = flat.contiguous()
    ints = flat.view(_INT_VIEWS[flat.element_size()])
    weights = _position_weights(ints.device)
    total = torch.zeros(2, dtype=torch.int64, device=ints.device)
    for index, start in enumerate(range(0, ints.numel(), CHUNK_ELEMENTS)):
        chunk = ints[start : start + CHUNK_ELEMENTS].to(torch.int64)
        total[0] += chunk.sum()
        total[1] += (chunk * weights[: chunk.numel()]).sum() * (2 * index + 1)
    return total


def _to_host(values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Same-shaped small results, one per tensor, on the host in order: one transfer per device."""
    by_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, value in enumerate(values):
        by_device[value.device].append(i)
    out: list[torch.Tensor | None] = [None] * len(values)
    for indices in by_device.values():
        stacked = torch.stack([values[i] for i in indices]).cpu()
        for i, row in zip(indices, stacked, strict=True):
            out[i] = row
    return out  # type: ignore[return-value]


def full_digest(tensors: Iterable[torch.Tensor]) -> str:
    """A digest of every byte of the tensors (dtypes and shapes included), computed on their devices."""
    hasher = hashlib.sha256()
    tensors = list(tensors)
    for tensor, sums in zip(tensors, _to_host([_checksums(t) for t in tensors]), strict=True):
        hasher.update(_header(tensor))
        hasher.update(sums.numpy().tobytes())
    return hasher.hexdigest()[:DIGEST_CHARS]


def sampled_digest(tensors: Sequence[torch.Tensor]) -> str:
    """A digest of the tensors' samples (dtypes, shapes and sample count included)."""
    k = per_tensor_samples(len(tensors))
    hasher = hashlib.sha256(f"k{k}".encode())
    for tensor, values in zip(tensors, samples(tensors, k), strict=True):
        hasher.update(_header(tensor))
        hasher.update(_bytes(values))
    return hasher.hexdigest()[:DIGEST_CHARS]


def exact_digest(tensors: Iterable[torch.Tensor]) -> str:
    """A sha256 of the tensors' bytes on the host: for small state such as RNG states."""
    hasher = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        hasher.update(_header(tensor))
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()[:DIGEST_CHARS]


def _full_sum_of_squares(tensor: torch.Tensor) -> torch.Tensor:
    flat = _flat(tensor)
    total = torch.zeros((), dtype=torch.float64, device=flat.device)
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        total += flat[start : start + CHUNK_ELEMENTS].double().pow(2).sum()
    return total


def tensor_digest(tensors: Iterable[torch.Tensor]) -> str:
    """The tensors' digest at the current depth: equal only when bit-identical (where it looks)."""
    tensors = list(tensors)
    return sampled_digest(tensors) if is_sampled() else full_digest(tensors)


def tensor_norm(tensors: Iterable[torch.Tensor]) -> float:
    """The L2 norm of the floating-point tensors together (0.0 for none).

    Full depth: exact, in float64 on the devices. Sampled: estimated from the samples
    (each tensor's sum of squares scaled by its size over its sample count), exact for a
    tensor with no more elements than samples.
    """
    tensors = list(tensors)
    floats = [t for t in tensors if t.is_floating_point()]
    if not floats:
        return 0.0
    if is_sampled():
        # The digest's samples (k from the whole group): gathered once, shared through the cache.
        k = per_tensor_samples(len(tensors))
        total = 0.0
        for tensor, values in zip(floats, samples(floats, k), strict=True):
            if values.numel():
                total += float(values.double().pow(2).sum()) * _flat(tensor).numel() / values.numel()
        return math.sqrt(total)
    return math.sqrt(float(sum(_to_host([_full_sum_of_squares(t) for t in floats]))))
