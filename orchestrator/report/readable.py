"""Terminal lines a person can read: long list values cut to a count and their first items.

A finding names both values whole (``reference [...], go [...]``); for a batch's sample ids
that is two lists of dozens of ids, hundreds of characters on one line. The terminal shows
them cut (``reference vs go: 32 ids, 32 differ: #bbfd…, #ec55… vs #8e4a…, #53d8…``);
report.json keeps every value whole.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

# A list literal longer than this (in characters) is cut.
MAX_LIST_CHARS = 40
# How many items (of each side, for a pair) a cut list still shows.
SHOWN_ITEMS = 2
# Longer items are cut to this many characters and an ellipsis ("#bbfd…").
ITEM_CHARS = 5
_NAME_BEFORE = re.compile(r"(\w+) $")  # "... reference " before the first list
_NAME_BETWEEN = re.compile(r"^, (\w+) $")  # ", go " between the two lists
_IDS_METRIC = re.compile(r"\b\w*_ids\b")  # batch_sample_ids


def _closing(text: str, start: int) -> int | None:
    """The index after the ``]`` that closes the ``[`` at ``start`` (quotes respected)."""
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def list_literals(text: str) -> Iterator[tuple[int, int, list[Any]]]:
    """Every top-level list literal in ``text``: (start, end, value)."""
    i = 0
    while (start := text.find("[", i)) >= 0:
        end = _closing(text, start)
        if end is None:
            return
        try:
            value = ast.literal_eval(text[start:end])
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            i = start + 1  # not a literal ("[3]" in prose still is; it is short)
            continue
        if isinstance(value, list):
            yield start, end, value
        i = end


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _item(value: Any, chars: int = ITEM_CHARS) -> str:
    text = _text(value)
    return text if len(text) <= chars + 1 else text[:chars] + "…"


def _telling_apart(a: Any, b: Any) -> int:
    # Enough characters to show where two items differ ("sample_0012…" vs "sample_0047…").
    x, y = _text(a), _text(b)
    same = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
    return max(ITEM_CHARS, same + 1)


def _noun(before: str) -> str:
    # The sample ids of a batch are what makes these lines long: name them so.
    return "ids" if _IDS_METRIC.search(before) else "values"


def cut_list(value: list[Any], noun: str = "values") -> str:
    """``[32 values: 15, 23, …]``: the count and the first items."""
    shown = ", ".join(_item(v) for v in value[:SHOWN_ITEMS])
    more = ", …" if len(value) > SHOWN_ITEMS else ""
    return f"[{len(value)} {noun}: {shown}{more}]"


def cut_pair(a: list[Any], b: list[Any], noun: str = "values") -> str:
    """``32 ids, 32 differ: #bbfd…, #ec55… vs #8e4a…, #53d8…``: the first items that differ."""
    differ = [i for i in range(max(len(a), len(b))) if i >= len(a) or i >= len(b) or a[i] != b[i]]
    one = noun[:-1] if len(a) == len(b) == 1 else noun  # "1 value"
    size = f"{len(a)} {one}" if len(a) == len(b) else f"{len(a)} vs {len(b)} {noun}"
    at = differ[:SHOWN_ITEMS] or list(range(min(SHOWN_ITEMS, len(a))))

    def side(values: list[Any]) -> str:  # the count says how many more differ
        items = []
        for i in (i for i in at if i < len(values)):
            chars = _telling_apart(a[i], b[i]) if i < min(len(a), len(b)) else ITEM_CHARS
            items.append(_item(values[i], chars))
        return ", ".join(items) or "-"

    first = differ[0] if differ else None
    if first is not None and first < min(len(a), len(b)) and isinstance(a[first], dict) and isinstance(b[first], dict):
        return f"{size}, {len(differ)} differ: {dict_differences(a[first], b[first])}"
    return f"{size}, {len(differ)} differ: {side(a)} vs {side(b)}"


def dict_differences(a: dict[Any, Any], b: dict[Any, Any], shown: int = 3) -> str:
    """``last_epoch 4 vs 0, _last_lr [0.01] vs [0.002]``: the keys whose values differ (a state dict's)."""
    keys = [k for k in {**a, **b} if a.get(k, "-") != b.get(k, "-")]
    parts = [f"{k} {_item(a.get(k, '-'), 12)} vs {_item(b.get(k, '-'), 12)}" for k in keys[:shown]]
    more = f", {len(keys) - shown} more keys" if len(keys) > shown else ""
    return (", ".join(parts) or "the same keys and values") + more


def cut_long_values(text: str, max_chars: int = MAX_LIST_CHARS) -> str:
    """``text`` with every list literal longer than ``max_chars`` cut to a count and its first items.

    Two long lists in a line named the way findings name them (``reference [...], go
    [...]``) become one comparison: ``reference vs go: 32 ids, 32 differ: a…, b… vs c…, d…``.
    """
    long = [(s, e, v) for s, e, v in list_literals(text) if e - s > max_chars]
    if not long:
        return text
    noun = _noun(text[: long[0][0]])
    if len(long) == 2:
        (s1, e1, a), (s2, e2, b) = long
        first, between = _NAME_BEFORE.search(text[:s1]), _NAME_BETWEEN.match(text[e1:s2])
        if first and between:
            return f"{text[: first.end() - 1]} vs {between.group(1)}: {cut_pair(a, b, noun)}{text[e2:]}"
    out, at = [], 0
    for start, end, value in long:
        out += [text[at:start], cut_list(value, noun)]
        at = end
    return "".join(out) + text[at:]
