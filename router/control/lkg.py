"""The last known good config, persisted under control.state_dir.

Two files:

- `lkg.json`: the whole accepted config: `{"meta": ..., "document": ..., "pins": ...,
  "modes": ...}`. The document is the accepted document without its tables; the merged
  pins are stored beside it, so a restart needs neither the tenants_file nor the control
  plane. Written to a temporary file, fsynced, renamed over the old one, and the
  directory fsynced: a crash leaves the old file or the new one, never half of one.
- `lkg-<digest>.journal`: the pin pushes (PUT/DELETE /tenants) accepted since that
  `lkg.json` was written, one JSON line each, fsynced per line. A push must not rewrite a
  million-pin file. The journal is named for the digest of the `lkg.json` it extends, so
  a journal left over from an older base is never replayed onto a newer one; a torn last
  line (a crash mid-append) is ignored.
- `lock`: held (flock) by the serving process for as long as it lives. Two routers
  writing one state_dir would each extend a journal the other does not read, and an
  accepted pin could be lost at the next restart; the second one refuses to start.

A journal line that could not be written whole (a full disk) is cut off again, and a
torn last line found at load (a crash mid-append) is cut off before the next append:
either would otherwise run into the next line and hide every push after it.

Everything here blocks; the reloader calls it in a worker thread.

For the fault suite only: with STAMP_ROUTER_TEST_LKG_STOP=<step> in its environment the
process kills itself (SIGKILL) when a write reaches that step (see `_test_stop`), so a
test can stop it between any two of the operations that make a write durable.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import orjson

from router.control.bulk import iter_slices

log = logging.getLogger("stamp_router.control")

FORMAT = 1
LKG_NAME = "lkg.json"
LOCK_NAME = "lock"
# Pushes kept in a journal before the next push rewrites lkg.json with all of them.
JOURNAL_COMPACT = 1000


# The steps of a write, in order, at which STAMP_ROUTER_TEST_LKG_STOP can stop the process.
SAVE_STEPS = ("tmp-written", "tmp-fsynced", "renamed", "dir-fsynced")
APPEND_STEPS = ("journal-written", "journal-fsynced")
TEST_STOP_ENV = "STAMP_ROUTER_TEST_LKG_STOP"


def _test_stop(step: str) -> None:
    """A test-only crash point: SIGKILL this process at `step` when the environment asks."""
    if os.environ.get(TEST_STOP_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


class StateDirInUse(Exception):
    """Another live router process holds this state_dir."""

    def __init__(self, state_dir: str, holder_pid: str) -> None:
        self.state_dir, self.holder_pid = state_dir, holder_pid
        super().__init__(f"{state_dir} is in use by another stamp-router process (pid {holder_pid}); "
                         "routers running side by side need a state_dir each")


class StateDirUnusable(ValueError):
    """control.state_dir cannot hold the last known good: the router serves without it."""


def state_dir_error(state_dir: str, exc: OSError) -> str:
    """One line saying what is wrong with the state directory, for an operator to fix."""
    where = f"control.state_dir {state_dir}"
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        what = "is not a directory (a file, or a path through one, is in the way)"
    elif isinstance(exc, PermissionError):
        what = f"cannot be written by this process (uid {os.getuid()})"
    elif exc.errno == errno.EROFS:
        what = "is on a read-only filesystem"
    elif exc.errno == errno.ENOSPC:
        what = "is on a full filesystem"
    else:
        what = f"cannot be used: {exc.strerror or exc}"
    return f"{where} {what}: the last known good config is not kept"


@dataclass
class LkgRecord:
    meta: dict[str, Any]
    document: dict[str, Any]
    pins: dict[str, str]
    modes: dict[str, str]
    ops: list[dict[str, Any]] = field(default_factory=list)


def lkg_meta(valid: Any, origin_digest: str | None, origin_version: str | None, edits: int) -> dict[str, Any]:
    """What lkg.json records beside the config: enough to rebuild the same digest and
    version label, and to tell whether a source still serves what it was taken from."""
    return {"digest": valid.digest, "source": valid.source, "origin_digest": origin_digest,
            "origin_version": origin_version, "edits": edits}


class LkgStore:
    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir
        self.path = os.path.join(state_dir, LKG_NAME)
        self.journal_lines = 0
        self._journal: str | None = None
        self._journal_whole: int | None = None     # set when the journal has a torn tail: its whole part
        self._lock = None

    def hold(self) -> str | None:
        """Take state_dir for this process, for its lifetime.

        Raises StateDirInUse when another live process holds it. A state_dir that cannot
        be created or opened is not fatal (the router serves; saving will fail and be
        counted): the reason is returned as a warning instead."""
        try:
            os.makedirs(self.dir, exist_ok=True)
            fh = open(os.path.join(self.dir, LOCK_NAME), "a+b")
        except OSError as exc:
            return state_dir_error(self.dir, exc)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read(32).decode("ascii", "replace").strip() or "unknown"
            fh.close()
            raise StateDirInUse(self.dir, holder) from None
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n".encode())
        fh.flush()
        self._lock = fh         # the lock lasts as long as this file stays open
        return None

    @property
    def lock_fd(self) -> int | None:
        """The descriptor holding the lock: a forked worker closes it, so that the lock
        goes with this process (router.process)."""
        return self._lock.fileno() if self._lock is not None else None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def has_base(self) -> bool:
        """Whether an lkg.json was written or read, so pushes can be journaled onto it."""
        return self._journal is not None

    def journal_path(self, digest: str) -> str:
        return os.path.join(self.dir, f"lkg-{digest[:16]}.journal")

    # -- writing -------------------------------------------------------------------------
    def save(self, meta: Mapping[str, Any], document: Mapping[str, Any],
             pins: Mapping[str, str], modes: Mapping[str, str],
             step_aside: Callable[[], None] | None = None, pins_json: bytes | None = None) -> None:
        """Write the whole config atomically and start an empty journal for it.

        `pins_json`, when given, is the JSON text of `pins` (ValidConfig.pins_json), written
        as it is; else the pins are serialized in slices, and `step_aside` is called
        between them (router.control.foreground)."""
        # Until this save is whole on disk, no journal extends what is in memory: a push
        # made after a failed save must be saved whole, not journaled onto the old base.
        self._journal = None
        os.makedirs(self.dir, exist_ok=True)
        meta = {**meta, "format": FORMAT, "saved_at": time.time()}
        body = {k: v for k, v in document.items() if k not in ("tenants", "tenants_file")}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(b'{"meta":' + orjson.dumps(meta) + b',"document":' + orjson.dumps(body) + b',"pins":')
                if pins_json is not None:
                    fh.write(pins_json)          # one write, without the GIL
                else:
                    fh.write(b"{")
                    _write_table(fh, pins, step_aside)
                    fh.write(b"}")
                fh.write(b',"modes":' + orjson.dumps(dict(modes)) + b"}\n")
                fh.flush()
                _test_stop("tmp-written")
                os.fsync(fh.fileno())
            _test_stop("tmp-fsynced")
            os.replace(tmp, self.path)
        except BaseException:
            _unlink(tmp)
            raise
        _test_stop("renamed")
        _fsync_dir(self.dir)
        _test_stop("dir-fsynced")
        journal = self.journal_path(meta["digest"])
        _unlink(journal)          # a journal of an identical earlier base is already folded in
        self._journal, self.journal_lines, self._journal_whole = journal, 0, None
        self._remove_leftovers(keep=journal)

    def append(self, op: Mapping[str, Any]) -> None:
        """Add one pin push to the journal of the current lkg.json, durably."""
        if self._journal is None:
            raise RuntimeError("no lkg.json to extend: save() first")
        line = orjson.dumps(op) + b"\n"
        fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if self._journal_whole is not None:
                os.ftruncate(fd, self._journal_whole)
                self._journal_whole = None
            whole = os.fstat(fd).st_size
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(28, "short write to the journal (is the disk full?)")
                _test_stop("journal-written")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, whole)      # never leave part of a line for the next one to run into
                raise
            _test_stop("journal-fsynced")
        finally:
            os.close(fd)
        self.journal_lines += 1

    def _remove_leftovers(self, keep: str) -> None:
        """Journals of older bases, and temporary files of writes that a crash cut short."""
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if name.startswith("lkg-") and name.endswith(".journal") and path != keep:
                _unlink(path)
            elif name.startswith(LKG_NAME + ".") and name.endswith(".tmp"):
                _unlink(path)

    # -- reading -------------------------------------------------------------------------
    def load(self) -> LkgRecord | None:
        """The stored config and its journal; None when there is none.

        Raises ValueError when lkg.json exists but cannot be used.
        """
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateDirUnusable(state_dir_error(self.dir, exc)) from None
        try:
            raw = orjson.loads(data)
            meta, document, pins, modes = raw["meta"], raw["document"], raw["pins"], raw["modes"]
            if meta.get("format") != FORMAT or not isinstance(meta.get("digest"), str):
                raise ValueError(f"unknown lkg format {meta.get('format')!r}")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self.path} is damaged: {exc}") from None
        journal = self.journal_path(meta["digest"])
        ops, self._journal_whole = _read_journal(journal)
        self._journal, self.journal_lines = journal, len(ops)
        return LkgRecord(meta=meta, document=document, pins=pins, modes=modes, ops=ops)


def _write_table(fh, table: Mapping[str, Any], step_aside: Callable[[], None] | None) -> None:
    """Write the members of a large table (no braces) in slices, each a short C call."""
    first = True
    for chunk in iter_slices(table):
        if step_aside is not None:
            step_aside()
        fh.write((b"" if first else b",") + orjson.dumps(chunk)[1:-1])
        first = False


def _read_journal(path: str) -> tuple[list[dict[str, Any]], int | None]:
    """The pushes in a journal, and the length of its whole part when its last line is
    torn (None when it ends whole): the next append cuts the torn tail off first.

    A torn tail is a push that was never acknowledged (the answer waits for the fsync).
    A damaged line inside the journal is skipped, not the end of it: the pushes after it
    were acknowledged."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return [], None
    lines = data.split(b"\n")
    ops = []
    for n, line in enumerate(lines[:-1], 1):
        if not line:
            continue
        try:
            ops.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.error("%s: line %d is damaged; skipping it", path, n)
    if lines[-1]:
        log.warning("%s: its last line is torn (a write cut short); it is dropped", path)
    return ops, (len(data) - len(lines[-1]) if lines[-1] else None)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
