"""What uvloop's TLS layer calls for every record, made cheaper where the router can.

uvloop runs TLS through OpenSSL memory BIOs (uvloop/sslproto.pyx): each read from the
socket is copied into the incoming BIO and decrypted with `SSLObject.read`, each write is
encrypted with `SSLObject.write` into the outgoing BIO and copied out to the socket, and
`SSLObject.pending` is asked around every read. Two costs of that path are not OpenSSL's
and are removed here (measured: benchmarks/README.md, "TLS"; the larger saving was
elsewhere, in batching a TLS connection's writes like a plain one's):

- `ssl.SSLObject` is ssl.py's Python wrapper: its read, write and pending are interpreted
  functions that call the same-named C methods of the `_ssl` object inside. `RecordObject`
  binds those C methods on the instance, so uvloop (which looks them up once per
  connection) calls OpenSSL's C entry points directly. Everything else (handshake,
  certificate, cipher, SNI, the context switch the SNI callback makes, unwrap) stays
  ssl.SSLObject's.
- A protocol without `get_buffer` gets each read as a new bytes object that uvloop asks
  OpenSSL to fill with up to 256 KiB: CPython allocates 256 KiB and shrinks it to the
  record's size. (In a fresh process glibc serves that size with mmap, mremap and munmap;
  in the router's worker its mmap threshold has grown past it and the heap serves it,
  strace shows no system call for it, so this is a small saving.) `READ_BUFFER` is the
  buffer a TLS connection lends instead (router.proxy.tls): one per process, since uvloop
  fills it and hands it back within one call, before any other connection's read.
"""

from __future__ import annotations

import ssl

# Larger than any record (16 KiB of plaintext); a read with more pending than this is
# finished in a later callback by uvloop itself.
READ_BUFFER_SIZE = 64 * 1024
READ_BUFFER = memoryview(bytearray(READ_BUFFER_SIZE))


class RecordObject(ssl.SSLObject):
    """ssl.SSLObject with read, write and pending bound straight to OpenSSL's C methods
    (their signatures are the same: read(size[, buffer]), write(data), pending())."""

    @classmethod
    def _create(cls, *args, **kwargs):
        # ssl.SSLContext.wrap_bio builds its object with this classmethod (CPython 3.8+);
        # the _ssl object it wraps is `_sslobj`.
        self = super()._create(*args, **kwargs)
        raw = self._sslobj
        self.read = raw.read
        self.write = raw.write
        self.pending = raw.pending
        return self
