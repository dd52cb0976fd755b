# cython: annotation_typing=False
"""A backend response's fields: how the relay treats each name, and the head read from
its bytes as they came.

The relay handles a few fields itself (the framing, Connection and the other hop-by-hop
ones, RFC 9110 7.6.1) and passes the rest on unchanged. Handing each field to Python as
the parser meets it costs two bytes objects, a call and a dict lookup per field: most of
a small response's relay. So when a read holds a whole ordinary head, `read_head` takes
the fields from the bytes themselves: the lines passed on as slices of the read (one per
run of lines between those the relay handles), the content length and whether the
backend asked to close. httptools still parses and validates the same head, without its
per-field callbacks (router.proxy.upstream); any head that is not ordinary returns None
and takes that per-field path. The compiled build does this (READ_WHOLE_HEADS); the
interpreted one takes the per-field path for every head.

Ordinary means: a final status (not 1xx), no Transfer-Encoding or Upgrade, and
Connection (if any) saying only keep-alive or close. Lines stay as the backend spelled
them.
"""

from __future__ import annotations

# How the relay treats a field, by its lowercase name; PASS: relayed as it came.
CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, UPGRADE, HOP = range(5)
PASS = -1
SPECIAL = {
    b"content-length": CONTENT_LENGTH, b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION, b"upgrade": UPGRADE,
    b"keep-alive": HOP, b"proxy-connection": HOP, b"te": HOP, b"trailer": HOP,
    b"proxy-authenticate": HOP, b"proxy-authorization": HOP,
}
# The spellings backends actually send, looked up as they come: most fields then cost one
# dict lookup and no .lower().
EXACT = {
    **{k.title(): v for k, v in SPECIAL.items()}, b"TE": HOP,
    **{name: PASS for name in (b"Date", b"Server", b"Content-Type", b"Cache-Control", b"ETag",
                                b"Last-Modified", b"Vary", b"Set-Cookie", b"Location", b"Expires",
                                b"Content-Encoding", b"Access-Control-Allow-Origin", b"X-Request-ID")},
}

try:
    import cython
    _COMPILED = cython.compiled
except ImportError:                 # interpreted, and Cython not installed
    _COMPILED = False

# Whether the relay reads whole heads here: in the compiled build only. Interpreted, the
# loop over the lines costs more than the parser's per-field calls it saves (pure build of
# benchmarks/dataplane_micro.py, callgrind: 164k instructions a request against 141k).
READ_WHOLE_HEADS = bool(_COMPILED)

# A line can only be one the relay handles if it starts with one of these letters and its
# name has one of these lengths; every other line passes without a look at its name.
_MAY_BE_SPECIAL_START = bytes(1 if chr(c).lower() in {n[:1].decode() for n in SPECIAL} else 0 for c in range(256))
_MAY_BE_SPECIAL_LENGTH = bytes(1 if n in {len(name) for name in SPECIAL} else 0 for n in range(32))

_H, _ONE, _CR, _COLON = b"H1\r:"
_KINDS = SPECIAL
_OWS = b" \t"


def _index(data: bytes, byte: int, start: int, stop: int) -> int:
    """Where `byte` first is in data[start:stop], or -1. Compiled, C's memchr (cimported by
    response_fields.pxd, so the name exists in the compiled build only): bytes.find parses
    its arguments through Python on every call, which costs more than the search over a
    field line."""
    if _COMPILED:
        if start >= stop:
            return -1
        p = data
        found = cython.cast("const unsigned char*", memchr(p + start, byte, stop - start))  # noqa: F821
        return found - p if found else -1
    return data.find(byte, start, stop)


def read_head(data: bytes):
    """(lines, content_length, close) of the response head that `data` starts with, or
    None when `data` does not hold a whole ordinary head (see the module's doc).

    `lines` are the fields to pass on, whole lines as they came, in order; `content_length`
    the Content-Length value (None without one); `close` whether Connection said close.

    The head is not validated here: the parser fed the same bytes does that, and what this
    returns is used only once it has (it refuses a bare CR or LF, a folded line, a line
    without a colon, a second Content-Length). It only has to split a valid head as the
    parser does, and to stop on any input."""
    head = data       # compiled: a char pointer, whose slices are plain copies into bytes
    size = len(data)
    # "HTTP/1.1 200" at least, from the first byte (the parser skips empty lines before a
    # message: such a read takes the per-field path); no 1xx interim response.
    if size < 16 or head[0] != _H or head[9] == _ONE:
        return None
    pos = _index(data, _CR, 12, size) + 2             # past the status line
    if pos < 2:
        return None
    run = pos                                         # where the run of lines passed on began
    lines = []
    length = None
    close = False
    while True:
        eol = _index(data, _CR, pos, size)
        if eol < 0:
            return None                               # the head goes on in the next read
        if eol == pos:
            break                                     # the empty line that ends the head
        if _MAY_BE_SPECIAL_START[head[pos]]:
            colon = _index(data, _COLON, pos, eol)
            name = colon - pos
            if 0 < name < 32 and _MAY_BE_SPECIAL_LENGTH[name]:
                kind = _KINDS.get(head[pos:colon].lower(), PASS)
                if kind != PASS:
                    if kind == CONTENT_LENGTH:
                        length = head[colon + 1:eol].strip(_OWS)
                    elif kind == CONNECTION:
                        value = head[colon + 1:eol].strip(_OWS).lower()
                        if value == b"close":
                            close = True
                        elif value != b"keep-alive":
                            return None               # it may name fields to drop
                    elif kind != HOP:
                        return None                   # Transfer-Encoding, Upgrade
                    if run < pos:
                        lines.append(head[run:pos])
                    run = eol + 2
        pos = eol + 2
    if run < pos:
        lines.append(head[run:pos])
    return lines, length, close
