"""A wake-up hint for the file watcher: Linux inotify on the watched files' directories.

The watcher decides what changed from fingerprints (router.control.sources), by polling.
Polling alone means a change waits up to one watch interval before anyone looks; with
inotify the watcher looks as soon as something in a watched directory was renamed,
created, deleted or closed after writing. The events themselves are not interpreted,
only counted as "look now": so a missed or a spurious event costs nothing but a stat,
and where inotify does not exist or does not work (not Linux, a network filesystem, the
watch limit reached) the polling still sees every change.

Directories, not files: an atomic rename replaces the file (a watch on the old inode
would go quiet), and a Kubernetes ConfigMap swaps a `..data` symlink in the directory
the config path is in. Both the directory of the path as given and that of the file it
resolves to are watched.

ctypes over libc, about forty lines: the libraries that wrap inotify bring a watcher
framework we do not need for a hint.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Callable, Iterable

log = logging.getLogger("stamp_router.control")

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_ONLYDIR = 0x01000000
# Not IN_MODIFY: a 24 MB write would wake the watcher once per write call. A writer that
# closes the file (IN_CLOSE_WRITE) is what the watcher's settle check waits for anyway.
MASK = IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR
IN_NONBLOCK = getattr(os, "O_NONBLOCK", 0)       # inotify takes the open(2) flag values
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class DirectoryHint:
    """Calls `on_event()` when anything happens in the watched directories.

    `open()` returns None when inotify is not available here; the caller then polls only.
    """

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self.fd = fd
        self.watched: set[str] = set()

    @classmethod
    def open(cls) -> DirectoryHint | None:
        if not (IN_NONBLOCK and IN_CLOEXEC):
            return None
        try:
            # The process's own symbols, libc's among them: find_library("c") would run
            # ldconfig in a subprocess, on the event loop thread.
            libc = ctypes.CDLL(None, use_errno=True)
            init = libc.inotify_init1
        except (OSError, AttributeError):
            return None
        fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            log.info("inotify is not available (%s): config file changes are found by polling only",
                     os.strerror(ctypes.get_errno()))
            return None
        return cls(libc, fd)

    def watch(self, paths: Iterable[str]) -> None:
        """Watch the directories of `paths` (as given and resolved); idempotent."""
        for path in paths:
            for directory in {os.path.dirname(os.path.abspath(path)), os.path.dirname(os.path.realpath(path))}:
                if directory in self.watched:
                    continue
                wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), MASK)
                if wd < 0:
                    # Missing (yet), or the per-user watch limit: polling covers it.
                    continue
                self.watched.add(directory)

    def drain(self, on_event: Callable[[], None]) -> None:
        """Read every pending event (their content does not matter) and report once."""
        got = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not data:
                break
            got = True
        if got:
            on_event()

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
