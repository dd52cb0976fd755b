"""Work on million-entry tables in slices, so a worker thread never holds the GIL for long.

`asyncio.to_thread` keeps the event loop responsive only between bytecodes: a single C call
(one `orjson.loads` of a 24 MB tenants file, one `dict(pins)`, one `set(values)`, freeing a
million-entry dict) holds the GIL until it returns, and the data path stalls for all of it
(measured: 1.3 s for the parse alone on the 2-core test machine). Everything here does the
same work as a sequence of calls of a few milliseconds each, so the loop thread gets the
GIL back at every switch interval.
"""

from __future__ import annotations

import re
import sys
import threading
from contextlib import contextmanager
from itertools import islice
from typing import Any, Callable, Iterator, Mapping

import orjson

# While a worker thread grinds through a table, the loop thread waits this long at most
# for the GIL (CPython's default switch interval is 5 ms): measured on a 2-core machine
# during a million-pin reload, the median loop delay fell from about 7 ms to about 1 ms.
BUSY_SWITCH_INTERVAL = 0.0005

# About 2,500 pins per slice: a few milliseconds of parsing each.
SLICE_BYTES = 64 * 1024
SLICE_ITEMS = 4096
# Failed attempts at one cut before the slicer gives up and parses the whole text.
MAX_EXTEND = 16

# A candidate cut: a comma after a string's closing quote or an object's closing brace,
# before the opening quote of the next key. The lookbehind drops an escaped quote; a cut
# that still lands inside a string or a nested object makes its slice fail to parse
# (unbalanced quotes or braces), and the slice is then extended to the next candidate.
_CUT = re.compile(rb'(?:(?<!\\)"|\})\s*(,)\s*"')


def iter_object_slices(data: bytes, slice_bytes: int = SLICE_BYTES) -> Iterator[Any]:
    """Yield the members of the JSON object in `data` as a sequence of small dicts.

    Their union (in order) is `orjson.loads(data)`. Anything that is not a plain object
    (an array, a syntax error, a text the cuts cannot split) ends in one whole parse, so
    errors come out exactly as orjson words them, and a non-object is yielded as is for
    the caller's checks to reject. Slices are yielded as they are parsed, so they are
    freed as the caller goes; a syntax error can come after some slices were yielded.

    Why this is sound: every slice starts at a member boundary and is parsed as
    `{slice}`. That parses only if the slice ends at a member boundary too (outside any
    string, at the object's top level), so a slice that parses is exactly the members
    it spans, and the next slice starts after the comma that follows it.
    """
    start, end = _object_bounds(data)
    if start is None or end - start <= slice_bytes:
        yield orjson.loads(data)
        return
    view = memoryview(data)
    pos = start + 1
    while pos < end:
        if end - pos <= slice_bytes:
            piece, nxt = _parse_rest(view, pos, end), end
        else:
            piece, nxt = _next_piece(data, view, pos, end, slice_bytes)
        if piece is None:
            # No cut parses. A syntax error: the whole parse raises it, worded for the
            # whole text. Else the cuts just fell badly: the rest is members, in one go.
            orjson.loads(data)
            piece, nxt = _parse_piece(view[pos:end]), end
        yield piece
        pos = nxt


_JSON_SPACE = b" \t\n\r"
_FIRST = re.compile(rb"[^ \t\n\r]")


def _content_end(data: bytes, end: int) -> int:
    """`end` less the JSON whitespace before it (at most 4 KiB of it; no copy of `data`)."""
    window = data[max(0, end - 4096):end]
    return end - (len(window) - len(window.rstrip(_JSON_SPACE)))


def _object_bounds(data: bytes) -> tuple[int | None, int]:
    """The offsets of the outer braces, or (None, 0) if the text is not an object.

    Without copies: data.strip() on 24 MB is a 24 MB memcpy under the GIL. A text
    ending in more than 4 KiB of whitespace is simply parsed whole.
    """
    first = _FIRST.search(data)
    end = _content_end(data, len(data))
    if first is None or data[first.start()] != 0x7B or data[end - 1:end] != b"}" or end - 1 <= first.start():
        return None, 0
    return first.start(), end - 1


def _parse_piece(piece) -> Any:
    return orjson.loads(b"{" + piece.tobytes() + b"}")


def _parse_rest(view: memoryview, pos: int, end: int) -> Any:
    try:
        return _parse_piece(view[pos:end])
    except orjson.JSONDecodeError:
        return None


def _next_piece(data: bytes, view: memoryview, pos: int, end: int, slice_bytes: int):
    search_from = pos + slice_bytes
    for _ in range(MAX_EXTEND):
        m = _CUT.search(data, search_from, end)
        if m is None:
            return _parse_rest(view, pos, end), end
        comma = m.start(1)
        try:
            return _parse_piece(view[pos:comma]), comma + 1
        except orjson.JSONDecodeError:
            search_from = m.end() - 1      # try the next cut
    return None, end


# A JSON document smaller than this is parsed in one call: well under 20 ms.
INLINE_SLICE_MIN = 1 << 20
# The members before "tenants" are parsed in one call, to check where it stands: so they
# must be small. So must the members after it, which are looked for in this much text.
MAX_HEAD = 1 << 20
MAX_TAIL = 64 * 1024
_TENANTS_MEMBER = re.compile(rb'"tenants"[ \t\n\r]*:[ \t\n\r]*\{')
# A "}" that may close the table: a comma follows, then the next member's key.
_TABLE_CLOSE = re.compile(rb'\}[ \t\n\r]*,[ \t\n\r]*"')


def split_inline_tenants(data: bytes, min_size: int = INLINE_SLICE_MIN) -> tuple[dict, bytes] | None:
    """A large JSON document with a top-level "tenants" table, in two parts: the rest of
    the document (parsed, without a "tenants" key), and the table's text, for
    iter_object_slices. The members around the table must be small (MAX_HEAD before it,
    MAX_TAIL after it: encoders that sort keys put "tenants_file" and "version" after
    it). None when the document is small or laid out otherwise; the caller then parses
    it whole.

    Why this is sound: `head` (the text up to a "tenants" key, then `"tenants":{}}`)
    parses as an object only if that key stands at the document's top level, outside any
    string. After the table, `{` and the text following its closing brace's comma parse
    as an object only if that brace closes a top-level member; of those braces the first
    is the table's own (a brace inside the table leaves the table's closing brace
    unmatched in that text). The table's text must then parse as one object
    (iter_object_slices, else the caller parses the whole document). Of repeated
    "tenants" keys the last wins, as in a whole parse.
    """
    if len(data) < min_size:
        return None
    end = _content_end(data, len(data))            # just after the document's "}"
    if data[end - 1:end] != b"}":
        return None
    for m in _TENANTS_MEMBER.finditer(data, 0, MAX_HEAD):
        try:
            head = orjson.loads(data[:m.start()] + b'"tenants":{}}')
        except orjson.JSONDecodeError:
            continue
        if not isinstance(head, dict) or head.pop("tenants", None) != {}:
            return None
        table_start = m.end() - 1
        for close in _TABLE_CLOSE.finditer(data, max(table_start, end - MAX_TAIL), end):
            try:
                tail = orjson.loads(b"{" + data[close.end() - 1:end])
            except orjson.JSONDecodeError:
                continue
            if "tenants" not in tail:
                return {**head, **tail}, data[table_start:close.start() + 1]
            break                                  # a later "tenants" wins: look for that one
        else:
            last = _content_end(data, end - 1)     # no member after it: the table is last
            return (head, data[table_start:last]) if data[last - 1:last] == b"}" else None
    return None


def count_missing(before: Mapping[str, Any], after: Mapping[str, Any], *,
                  enough_kept: int | None = None) -> tuple[int, bool]:
    """How many keys of `before` are not in `after`: (count, exact).

    Lookups in C, a slice per call. With `enough_kept`, the scan stops as soon as that
    many keys were found in `after`; the count is then an upper bound (exact False). A
    million random lookups take the better part of a second on a busy machine, and a
    guard that only needs "no more than half are gone" can stop half-way.
    """
    if before is after:
        return 0, True
    kept = 0
    keys = iter(before)
    if type(after) is dict:
        # set.difference(dict) looks each key up with the hash the str already holds.
        while chunk := set(islice(keys, SLICE_ITEMS)):
            kept += len(chunk) - len(chunk.difference(after))
            if enough_kept is not None and kept >= enough_kept:
                return len(before) - kept, kept == len(before)
    else:
        contains = after.__contains__
        while chunk := list(islice(keys, SLICE_ITEMS)):
            kept += sum(map(contains, chunk))
            if enough_kept is not None and kept >= enough_kept:
                return len(before) - kept, kept == len(before)
    return len(before) - kept, True


def drain(table: dict, step_aside: Callable[[], None] | None = None) -> None:
    """Empty a dict one entry at a time, so freeing a million keys is not one C call.

    `step_aside` is called between slices (router.control.foreground)."""
    pop = table.popitem
    while table:
        if step_aside is not None:
            step_aside()
        for _ in range(min(len(table), SLICE_ITEMS)):
            pop()


def iter_slices(table: Mapping[str, Any], size: int = SLICE_ITEMS) -> Iterator[dict]:
    items = iter(table.items())
    while chunk := dict(islice(items, size)):
        yield chunk


_busy_lock = threading.Lock()
_busy = [0, 0.0]        # how many callers are inside busy_worker(), the interval to restore


@contextmanager
def busy_worker() -> Iterator[None]:
    """Lower the GIL switch interval while worker threads process large tables."""
    with _busy_lock:
        if _busy[0] == 0:
            _busy[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_busy[1], BUSY_SWITCH_INTERVAL))
        _busy[0] += 1
    try:
        yield
    finally:
        with _busy_lock:
            _busy[0] -= 1
            if _busy[0] == 0:
                sys.setswitchinterval(_busy[1])
