"""Which config the router starts with (static stability at start).

    the local file cannot be read, does not parse or has invalid [listen], [admin] or
    [control] (missing, empty, torn, a dangling symlink):
        an LKG is stored in the state directory   -> the LKG with the process sections it
                                                     was saved with, flagged
        otherwise                                 -> exit 1 with the reason
      The state directory is then STAMP_ROUTER_STATE_DIR (`serve --state-dir`), else
      control.state_dir's default relative to the config file's directory.
    etcd is the source and an LKG is stored -> the LKG (with its journal), flagged, at
                                                 once; etcd is read in the background and
                                                 its content submitted like any change
    the configured source (control.url, etcd without an LKG, else the file) gives a valid config:
        its content is what the last known good (LKG) was taken from -> the LKG, with
                                                 the pin pushes made since (none lost)
        it drops too much of the LKG             -> the LKG (the drop guard, as at run time)
        otherwise                                -> the source's config, saved as the LKG
    it does not (control plane down, invalid document, unreadable tenants_file):
        an LKG is stored                          -> the LKG, flagged in /readyz and metrics
        control.url is set and the file holds a full config -> the file
        otherwise                                 -> exit 1 with every error
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from router.config import ConfigError, ValidConfig, format_of, validate_document
from router.errors import format_error
from router.config.load import read_tenants_whole
from router.control.candidate import (PROCESS_SECTIONS, Bootstrap, Candidate, bootstrap_of, default_state_dir, prepare,
                                      read_file_candidate, sniff_format)
from router.control.etcd_source import first_read
from router.control.guard import plan_drop
from router.control.lkg import LkgRecord, LkgStore, StateDirUnusable
from router.control.pins import apply_op, check_op
from router.control.reloader import APPLIED, INVALID, UNSAFE, Origin, ReloadResult
from router.control.sources import HttpPoller, fingerprint

log = logging.getLogger("stamp_router.control")

_SOURCE_NAMES = {"url": "control plane", "etcd": "etcd", "file": "config file"}
# How long the first control-plane fetch may take before the router starts without it.
FIRST_FETCH_TIMEOUT = 10.0


@dataclass
class Start:
    valid: ValidConfig
    bootstrap: Bootstrap
    store: LkgStore
    origin: Origin
    last: ReloadResult
    persist: bool                     # save it as the LKG once serving (it is not the LKG)
    etag: str | None = None           # of the control plane's document read at start
    body: bytes | None = None         # its sha256
    warnings: list[str] = field(default_factory=list)
    seen: dict[str, tuple | None] = field(default_factory=dict)   # file fingerprints before reading
    etcd_revision: int | None = None  # the revision etcd was read at, if it was
    state_dir_problem: str | None = None   # why control.state_dir cannot keep the LKG (one of warnings)


async def choose_start(config_path: str) -> Start:
    """Raises ConfigError with every error when there is nothing valid to start from."""
    # Fingerprints taken before reading: a change made while the router starts is seen
    # by the watcher as a change, not taken as the state already loaded.
    seen = {os.path.abspath(config_path): fingerprint(config_path)}
    warnings: list[str] = []
    file_errors = file_cand = None
    try:
        # Parsed once, off the loop: the same parse gives the bootstrap and the candidate.
        file_cand, bootstrap = await asyncio.to_thread(read_file_candidate, config_path)
        if not bootstrap.data.strip():
            raise ConfigError([("", f"{bootstrap.path} is empty")])
    except ConfigError as exc:
        file_errors = exc.errors
        bootstrap = _bootstrap_from_lkg(config_path, file_errors, warnings)
    tenants_file = bootstrap.document.get("tenants_file")
    if isinstance(tenants_file, str) and not bootstrap.control.url:
        seen[bootstrap.resolve(tenants_file)] = fingerprint(bootstrap.resolve(tenants_file))
    store = LkgStore(bootstrap.resolve(bootstrap.control.state_dir))
    kind = "url" if bootstrap.control.url else "etcd" if bootstrap.control.etcd else "file"

    etag = body = etcd_revision = None
    primary, errors = None, []
    if bootstrap.control.url:
        poller = HttpPoller(lambda: bootstrap.control, lambda: read_token(bootstrap, bootstrap.control.token_file),
                            on_document=None, on_poll=None)
        try:
            fetched = await poller.fetch(conditional=False, timeout=FIRST_FETCH_TIMEOUT)
        finally:
            await poller.close()
        if fetched.status == "changed":
            etag, body = fetched.etag, hashlib.sha256(fetched.data).digest()
            primary, errors = await _try(Candidate("url", bootstrap.control.url, fetched.data,
                                                   sniff_format(fetched.data, fetched.content_type)), bootstrap,
                                         overlay=True)
        else:
            errors = [("control.url", f"cannot fetch the config: {fetched.error}")]
    elif bootstrap.control.etcd is not None:
        pass        # read below, unless a last known good can serve while etcd is read
    elif file_errors is not None:
        errors = file_errors
    else:
        primary, errors = await _try(file_cand, bootstrap, overlay=False)

    lkg = state_dir_problem = None
    try:
        record = store.load()
        if record is not None and primary is None and kind != "etcd":
            bootstrap = _fill_sections(bootstrap, record, warnings)
        lkg = from_record(record, bootstrap) if record is not None else None
    except StateDirUnusable as exc:
        state_dir_problem = str(exc)
        warnings.append(state_dir_problem)
    except (ValueError, ConfigError) as exc:
        warnings.append(f"the last known good config in {store.dir} cannot be used: {exc}")

    def start(valid: ValidConfig, origin: Origin, last: ReloadResult, *, persist: bool) -> Start:
        return Start(valid, bootstrap, store, origin, last, persist=persist, etag=etag, body=body,
                     warnings=warnings, seen=seen, etcd_revision=etcd_revision,
                     state_dir_problem=state_dir_problem)

    if kind == "etcd":
        if lkg is not None:
            # A full read of etcd takes its time (30 s for a million pins): the last known
            # good serves meanwhile, flagged, and the source's first read (reason "start")
            # replaces it once validated and through the drop guard, as any change would.
            lkg_valid, lkg_origin = lkg
            lkg_origin.lkg = True
            warnings.append(f"serving the last known good config (version {lkg_valid.version}) while etcd is "
                            "read; etcd's content replaces it once read and validated")
            return start(lkg_valid, lkg_origin, _result(APPLIED, "lkg", lkg_valid), persist=False)
        cand, errors, etcd_revision = await first_read(bootstrap)
        if cand is not None:
            primary, errors = await _try(cand, bootstrap, overlay=True)

    if primary is not None:
        if lkg is not None:
            lkg_valid, lkg_origin = lkg
            if lkg_origin.digest == primary.digest:
                # The source still serves what the LKG was taken from: keep the pushes made since.
                return start(lkg_valid, lkg_origin, _result(APPLIED, kind, lkg_valid), persist=False)
            plan = plan_drop(lkg_valid.pins, primary.pins, {s.name for s in lkg_valid.config.stamps},
                             {s.name for s in primary.config.stamps}, bootstrap.control.max_drop_fraction)
            if plan.unsafe:
                warnings.append("the configured source's config " + "; ".join(plan.reasons())
                                + "; starting from the last known good (push it with force to apply it)")
                lkg_origin.lkg = True
                return start(lkg_valid, lkg_origin, dataclasses.replace(_result(UNSAFE, kind), plan=plan),
                             persist=False)
        return start(primary, Origin(digest=primary.digest, version=primary.version),
                     _result(APPLIED, kind, primary), persist=True)

    failed = _result(INVALID, kind, errors=errors)
    if lkg is not None:
        lkg_valid, lkg_origin = lkg
        lkg_origin.lkg = True
        warnings.append(f"starting from the last known good config (version {lkg_valid.version}); "
                        f"the {_SOURCE_NAMES[kind]} gave none: "
                        + "; ".join(format_error(p, m) for p, m in errors[:10]))
        return start(lkg_valid, lkg_origin, failed, persist=False)
    if kind != "file" and bootstrap.has_routing:
        seed, seed_errors = await _try(file_cand or Candidate("file", bootstrap.path, bootstrap.data,
                                                              format_of(bootstrap.path)), bootstrap, overlay=False)
        if seed is not None:
            warnings.append(f"the {_SOURCE_NAMES[kind]} gave no config and there is no last known good; "
                            "starting from the routing config in the local file")
            return start(seed, Origin(digest=seed.digest, version=seed.version), failed, persist=True)
        errors = errors + seed_errors
    raise ConfigError(errors)


def _bootstrap_from_lkg(config_path: str, file_errors: list, warnings: list[str]) -> Bootstrap:
    """The bootstrap sections the last known good was saved with, when the local file
    cannot give any; ConfigError (the file's errors, and where no LKG was found) if none."""
    state_dir = default_state_dir(config_path)
    reason = "; ".join(format_error(p, m) for p, m in file_errors[:3])
    try:
        record = LkgStore(state_dir).load()
    except ValueError as exc:
        raise ConfigError([*file_errors, ("control.state_dir", f"the last known good config cannot be used: {exc}")]) from None
    if record is None:
        raise ConfigError([*file_errors, ("control.state_dir", f"no last known good config in {state_dir} to start "
                                          "from (set --state-dir or STAMP_ROUTER_STATE_DIR if it is elsewhere)")])
    sections = {k: record.document[k] for k in PROCESS_SECTIONS if k in record.document}
    sections["control"] = {**sections.get("control", {}), "state_dir": state_dir}    # where it was found
    try:
        bootstrap = bootstrap_of(os.path.abspath(config_path), b"", sections)
    except ConfigError as exc:
        raise ConfigError([*file_errors, *exc.errors]) from None
    warnings.append(f"the config file cannot be used ({reason}): the last known good config in {state_dir} "
                    "gives [listen], [admin] and [control] as they were when it was saved")
    return bootstrap


def _fill_sections(bootstrap: Bootstrap, record: LkgRecord, warnings: list[str]) -> Bootstrap:
    """A file that gives no valid config may be torn: the process sections it lacks are
    taken from the last known good rather than from the defaults (another port)."""
    missing = {k: record.document[k] for k in PROCESS_SECTIONS if k in record.document and k not in bootstrap.document}
    if not missing:
        return bootstrap
    try:
        filled = bootstrap_of(bootstrap.path, bootstrap.data, {**bootstrap.document, **missing})
    except ConfigError:
        return bootstrap
    warnings.append(f"the config file has no [{'], ['.join(missing)}]: taken from the last known good")
    return filled


async def _try(cand: Candidate, bootstrap: Bootstrap, *, overlay: bool):
    try:
        return (await asyncio.to_thread(prepare, cand, bootstrap, overlay=overlay, read_tenants=read_tenants_whole))[0], []
    except ConfigError as exc:
        return None, exc.errors


def _result(outcome: str, kind: str, valid: ValidConfig | None = None, errors=()) -> ReloadResult:
    return ReloadResult(outcome, kind, version=valid.version if valid else None,
                        digest=valid.digest if valid else None, errors=list(errors))


def from_record(record: LkgRecord, bootstrap: Bootstrap) -> tuple[ValidConfig, Origin]:
    """Rebuild the stored config, then replay its journal of pin pushes.

    The origin's digest is that of the source content the LKG was taken from: a source
    still serving it has nothing newer to say.
    """
    meta = record.meta
    doc = {k: v for k, v in record.document.items() if k not in PROCESS_SECTIONS}
    doc.update(bootstrap.sections)
    tenants: dict[str, Any] = dict(record.pins)
    for tenant, mode in record.modes.items():
        tenants[tenant] = {"stamp": record.pins[tenant], "mode": mode}
    valid = validate_document({**doc, "tenants": tenants}, source=meta["source"], base_dir=bootstrap.base_dir)
    edits = int(meta.get("edits") or 0)
    origin_version = meta.get("origin_version") or valid.version
    config = valid.config.model_copy(update={"version": f"{origin_version}+{edits}"}) if edits else valid.config
    # The pins live in `pins`; the document keeps no second copy of a large table.
    valid = dataclasses.replace(valid, config=config, digest=meta["digest"], document=MappingProxyType(doc))
    for op in record.ops:
        try:
            check_op(valid, op)
        except ConfigError as exc:
            log.warning("skipping a journaled pin push that no longer applies: %s", exc)
            continue
        edits += 1
        valid = apply_op(valid, op, base_version=origin_version, edits=edits)
    return valid, Origin(digest=meta.get("origin_digest"), version=origin_version, edits=edits)


def read_token(bootstrap: Bootstrap, token_file: str | None) -> str | None:
    """The token in `token_file` (relative to the config file), or None if unset or unreadable."""
    if not token_file:
        return None
    try:
        with open(bootstrap.resolve(token_file), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None             # the caller says what is refused or sent without it
