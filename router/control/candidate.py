"""Candidates: a config from some source, parsed and validated in full before it is used.

The local config file plays two roles. Its `[listen]`, `[admin]` and `[control]` sections
(the bootstrap) say how this process listens, who may write to it and where its config
comes from; they always come from the local file. The routing part (stamps, routing,
tenants, ...) comes from the file, or from the control-plane URL when `control.url` is
set, or from an admin push. A candidate from the URL or a push has its bootstrap sections
replaced by the local file's, so a remote document cannot move the admin port or point
the router at another control plane.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.config import ConfigError, ValidConfig, format_of, parse_document, validate_document
from router.config.load import loc_to_path
from router.config.schema import Admin, Control, Listen, Process
from router.control.bulk import iter_object_slices, split_inline_tenants
from router.core.snapshot import build_snapshot

PROCESS_SECTIONS = ("listen", "admin", "control", "process")
# Names the state directory over control.state_dir (`serve --state-dir` sets it): the
# last known good must be found when the config file that names it cannot be read.
STATE_DIR_ENV = "STAMP_ROUTER_STATE_DIR"


def state_dir_override() -> str | None:
    return os.environ.get(STATE_DIR_ENV) or None


def with_state_dir_override(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with control.state_dir set from STAMP_ROUTER_STATE_DIR, when that is set."""
    override = state_dir_override()
    if override is not None:
        control = doc.get("control")
        doc["control"] = {**(control if isinstance(control, dict) else {}), "state_dir": override}
    return doc


def default_state_dir(config_path: str) -> str:
    """Where the state directory is when nothing names it: control.state_dir's default,
    relative to the config file's directory (the file need not exist)."""
    given = state_dir_override() or Control.model_fields["state_dir"].default
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), os.path.expanduser(given)))


class _Process(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    listen: Listen = Field(default_factory=Listen)
    admin: Admin = Field(default_factory=Admin)
    control: Control = Field(default_factory=Control)
    process: Process = Field(default_factory=Process)


@dataclass(frozen=True)
class Bootstrap:
    """The local config file, parsed, with its bootstrap sections validated."""

    path: str                     # absolute
    data: bytes
    document: dict[str, Any]
    listen: Listen
    admin: Admin
    control: Control
    process: Process

    @property
    def base_dir(self) -> str:
        return os.path.dirname(self.path)

    def resolve(self, path: str) -> str:
        """A path named in the config, relative to the config file's directory."""
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(path)))

    @property
    def sections(self) -> dict[str, Any]:
        return {k: self.document[k] for k in PROCESS_SECTIONS if k in self.document}

    @property
    def has_routing(self) -> bool:
        return "stamps" in self.document


def read_bootstrap(path: str) -> Bootstrap:
    """Read and parse the local file, check its bootstrap sections; ConfigError if not."""
    path = os.path.abspath(path)
    return bootstrap_from(path, _read_local(path))


def read_file_candidate(path: str) -> tuple[Candidate, Bootstrap]:
    """file_candidate() of the local file, read now. Blocks."""
    path = os.path.abspath(path)
    return file_candidate(path, _read_local(path))


def _read_local(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror}")]) from None


def bootstrap_from(path: str, data: bytes) -> Bootstrap:
    return bootstrap_of(path, data, parse_document(data, format_of(path)))


def bootstrap_of(path: str, data: bytes, doc: dict[str, Any]) -> Bootstrap:
    """The bootstrap of a parsed document; ConfigError if its sections are not valid."""
    doc = with_state_dir_override(doc)
    try:
        process = _Process.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError([(loc_to_path(e["loc"]), e["msg"].removeprefix("Value error, "))
                           for e in exc.errors(include_url=False)]) from None
    return Bootstrap(path=path, data=data, document=doc, listen=process.listen,
                     admin=process.admin, control=process.control, process=process.process)


@dataclass(frozen=True)
class Parsed:
    """A document parsed once: its members and, when its large JSON [tenants] table was
    split out to be read in slices (router.control.bulk), that table's text."""

    doc: dict[str, Any]
    tenants_text: bytes | None = None


@dataclass(frozen=True)
class Candidate:
    kind: str             # file | url | admin | lkg: the metrics' source label
    source: str           # where it came from: a path, a URL, "admin"
    data: bytes
    fmt: str              # json | toml
    force: bool = False   # pass the drop guard
    parsed: Parsed | None = dataclasses.field(default=None, compare=False, repr=False)   # `data`, when parsed already


def parse(cand: Candidate, slice_inline: bool = True) -> Parsed:
    split = split_inline_tenants(cand.data) if slice_inline and cand.fmt == "json" else None
    return Parsed(*split) if split is not None else Parsed(parse_document(cand.data, cand.fmt))


def file_candidate(path: str, data: bytes, *, force: bool = False) -> tuple[Candidate, Bootstrap]:
    """The local config file in both its roles, parsed once: the candidate it is and its
    bootstrap. Blocks (run it off the event loop). ConfigError when it does not parse or
    its bootstrap sections are not valid."""
    cand = Candidate("file", path, data, format_of(path), force)
    parsed = parse(cand)
    bootstrap = bootstrap_of(path, data, dict(parsed.doc))
    return dataclasses.replace(cand, parsed=parsed), bootstrap


def sniff_format(data: bytes, content_type: str | None) -> str:
    """JSON or TOML by Content-Type; without a known one, a document opening with { is JSON."""
    guess = "body.json" if data.lstrip()[:1] == b"{" else "body.toml"
    return format_of(guess, content_type)


def read_tenants_sliced(path: str) -> tuple[bytes, Iterable[Any]]:
    with open(path, "rb") as fh:
        data = fh.read()
    return data, iter_object_slices(data)


def prepare(cand: Candidate, bootstrap: Bootstrap, *, overlay: bool,
            read_tenants: Callable[[str], tuple[bytes, Iterable[Any]]] = read_tenants_sliced,
            slice_inline: bool = True) -> tuple[ValidConfig, list[str]]:
    """Parse and validate a candidate in full; blocks (run it in a worker thread).

    Returns the config and the bootstrap sections of the candidate that were replaced by
    the local file's (reported, so that nobody wonders why a pushed [admin] had no
    effect). Raises ConfigError with every error.

    A large JSON document's [tenants] table is parsed in slices, like a tenants_file,
    when the members around it are small (router.control.bulk.split_inline_tenants).
    """
    parsed = cand.parsed if cand.parsed is not None and slice_inline else parse(cand, slice_inline)
    doc = dict(parsed.doc)        # members are replaced below, never changed in place: parsed stays as it was
    ignored = []
    if overlay:
        for key in PROCESS_SECTIONS:
            if key in doc and doc[key] != bootstrap.document.get(key):
                ignored.append(key)
            doc.pop(key, None)
            if key in bootstrap.document:
                doc[key] = bootstrap.document[key]
    else:
        with_state_dir_override(doc)
    inline = (parsed.tenants_text, iter_object_slices(parsed.tenants_text)) if parsed.tenants_text is not None else None
    try:
        valid = validate_document(doc, source=cand.source, base_dir=bootstrap.base_dir,
                                  digest_parts=(cand.data,), read_tenants=read_tenants, inline_tenants=inline)
    except orjson.JSONDecodeError:
        # The table is not JSON, or not where the split took it to end: a whole parse
        # words the error for the document, or reads the layout as it is.
        return prepare(cand, bootstrap, overlay=overlay, read_tenants=read_tenants, slice_inline=False)
    dry_build(valid)
    return valid, ignored


def dry_build(valid: ValidConfig) -> None:
    """Build the snapshot once off the loop thread, and throw it away.

    It finds what only a build can (a source not available in this process), and it
    fills build_placement's cache, so the build on the loop thread at swap time does not
    recompute a placement table for a changed stamp set. The jwt source needs keys that
    only the loop thread may load; a stand-in leaves it out here.
    """
    try:
        build_snapshot(valid, loaded_at=0.0, extra_sources={"jwt": lambda v: None})
    except ValueError as exc:
        raise ConfigError([("routing.sources", str(exc))]) from None
