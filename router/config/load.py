"""Reading a config document (TOML or JSON) into a validated, immutable `ValidConfig`.

All errors come back at once in one `ConfigError`, each with its field path:
schema errors from pydantic, cross-field errors from `validate`, and pin errors from the
tenants tables. Nothing here touches the running router; a caller swaps a snapshot in
only after this returned.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, get_args

import orjson
from pydantic import BaseModel, ValidationError

from router.config.messages import schema_message
from router.config.schema import Config
from router.config.validate import check_cross_fields, check_pins
from router.errors import ConfigError


@dataclass(frozen=True)
class PinsText:
    """The JSON text that a pin table is exactly: a tenants_file, or a JSON document's own
    [tenants] table, of plain pins and with no other table. Writing the last known good
    copies it instead of serializing a million pins again (a quarter of a second of GIL
    time per reload)."""

    pins: Mapping[str, str]           # the table parsed from it: valid only while it is served
    text: bytes


@dataclass(frozen=True)
class ValidConfig:
    """A config that passed every check, with its pins merged from all tables."""

    config: Config
    pins: Mapping[str, str]            # tenant -> stamp name (names shared unless bulk-loaded)
    modes: Mapping[str, str]           # tenant -> mode, only for non-default modes
    digest: str                        # sha256 over the documents it came from
    source: str                        # where it came from: a path, a URL, "admin"
    document: Mapping[str, Any] = field(repr=False)  # the raw document, tenants included
    # Relative paths in the config (tenants_file, jwt key files) are relative to this: the
    # directory of the local config file, also for a config from the control plane or a push.
    base_dir: str = ""
    pins_text: PinsText | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return self.config.version or self.digest[:12]

    @property
    def pins_json(self) -> bytes | None:
        """The JSON text of `pins`, when there is one (PinsText). A config derived with
        other pins (dataclasses.replace) keeps the old PinsText, which then no longer
        matches: hence the identity check."""
        text = self.pins_text
        return text.text if text is not None and text.pins is self.pins else None


def loc_to_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}" if out else part
        else:
            out += f"[{str(part)!r}]"
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):      # Optional[...], list[...]
        model = _model_in(arg)
        if model is not None:
            return model
    return None


def _did_you_mean(loc: tuple) -> str:
    """A hint naming the key the schema allows where a typo stands, if one is close."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if isinstance(part, int):         # a list item has its list's model
            continue
        field = model.model_fields.get(part) if model else None
        model = _model_in(field.annotation) if field else None
    if model is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _schema_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for err in exc.errors(include_url=False):
        # Union members and validator wrappers add noise entries to loc.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p in ("str", "list[str]", "Pin"))))
        msg = schema_message(err)
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc)
        errors.append((loc_to_path(loc), msg))
    return errors


def parse_document(data: bytes | str, fmt: str) -> dict:
    """Parse TOML or JSON into a mapping; raise ConfigError on a syntax error."""
    try:
        if fmt == "json":
            doc = orjson.loads(data)
        elif fmt == "toml":
            doc = tomllib.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        else:
            raise ConfigError([("", f"unknown config format {fmt!r}")])
    except (orjson.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"cannot parse {fmt.upper()}: {exc}")]) from None
    if not isinstance(doc, dict):
        raise ConfigError([("", "the config must be a table (JSON object) at the top level")])
    return doc


def format_of(path: str, content_type: str | None = None) -> str:
    if content_type:
        ct = content_type.split(";")[0].strip().lower()
        if ct in ("application/json", "text/json"):
            return "json"
        if ct in ("application/toml", "text/toml", "text/x-toml"):
            return "toml"
    return "json" if path.lower().endswith(".json") else "toml"


def read_tenants_whole(path: str) -> tuple[bytes, Iterable[Any]]:
    with open(path, "rb") as fh:
        data = fh.read()
    return data, (orjson.loads(data),)


# A table checked in slices caps each slice's errors on its own; past this many errors
# in all, the rest of the table is not checked.
MAX_SLICED_TABLE_ERRORS = 200


MAX_STAMPS = 10_000


def validate_document(doc: dict, *, source: str, base_dir: str = ".",
                      digest_parts: tuple[bytes, ...] = (),
                      read_tenants: Callable[[str], tuple[bytes, Iterable[Any]]] = read_tenants_whole,
                      inline_tenants: tuple[bytes, Iterable[Any]] | None = None) -> ValidConfig:
    """Validate a parsed document in full; raise ConfigError listing every error.

    `read_tenants(path)` returns the tenants_file's bytes and its table, whole or as a
    sequence of slices (router.control.bulk, for reloads off the event loop thread).
    `inline_tenants`, the same for the document's own [tenants] table, stands in for
    doc["tenants"] (router.control.bulk.split_inline_tenants); a JSON syntax error in it
    is raised as orjson.JSONDecodeError, for the caller to word for the whole document.
    """
    stamps = doc.get("stamps")
    if isinstance(stamps, list) and len(stamps) > MAX_STAMPS:
        # Refused before the schema sees it: a million bad stamps would be millions of
        # errors, minutes and gigabytes (measured: 116 s, 3.4 GB) before any refusal.
        raise ConfigError([("stamps", f"{len(stamps)} stamps: a config may have {MAX_STAMPS} at most")])
    errors: list[tuple[str, str]] = []
    body = {k: v for k, v in doc.items() if k != "tenants"}
    config = None
    try:
        config = Config.model_validate(body)
    except ValidationError as exc:
        errors.extend(_schema_errors(exc))
    errors.extend(check_cross_fields(doc))

    stamp_names = {}
    for stamp in doc.get("stamps") or []:
        if isinstance(stamp, dict) and isinstance(stamp.get("name"), str):
            stamp_names.setdefault(stamp["name"], stamp["name"])
    pins: dict[str, str] = {}
    modes: dict[str, str] = {}
    text = None              # the JSON text that pins is exactly, if there is one (PinsText)
    if inline_tenants is not None:
        inline_bytes, tables = inline_tenants
        if _check_tables(tables, "tenants", stamp_names, pins, modes, errors):
            text = inline_bytes
    elif "tenants" in doc:
        check_pins(doc["tenants"], "tenants", stamp_names, pins, modes, errors)
    tenants_bytes = b""
    tenants_file = doc.get("tenants_file")
    if isinstance(tenants_file, str):
        path = os.path.join(base_dir, tenants_file)
        try:
            tenants_bytes, tables = read_tenants(path)
            alone = not pins
            plain = _check_tables(tables, "tenants_file", stamp_names, pins, modes, errors,
                                  origin={"path": "[tenants]"})
            text = tenants_bytes if plain and alone else None
        except OSError as exc:
            errors.append(("tenants_file", f"cannot read {path}: {exc.strerror}"))
        except orjson.JSONDecodeError as exc:
            errors.append(("tenants_file", f"{path} is not valid JSON: {exc}"))
    if errors or config is None:
        raise ConfigError(errors)

    h = hashlib.sha256()
    for part in digest_parts or (orjson.dumps(body, option=orjson.OPT_SORT_KEYS),):
        h.update(part)
        h.update(b"\0")
    h.update(tenants_bytes)
    if not digest_parts and inline_tenants is not None:
        h.update(inline_tenants[0])
    elif not digest_parts and "tenants" in doc:
        h.update(orjson.dumps(doc["tenants"], option=orjson.OPT_SORT_KEYS))
    # pins and modes stay plain dicts (never mutated once built): the request path reads them.
    return ValidConfig(config=config, pins=pins, modes=modes,
                       digest=h.hexdigest(), source=source, document=MappingProxyType(doc),
                       base_dir=os.path.abspath(base_dir),
                       pins_text=PinsText(pins, text) if text is not None and not modes else None)


def _check_tables(tables: Iterable[Any], path: str, stamp_names: dict[str, str], pins: dict[str, str],
                  modes: dict[str, str], errors: list[tuple[str, str]],
                  origin: dict[str, str] | None = None) -> bool:
    """Check the slices of one pin table into `pins`; whether `pins` is now exactly that
    table as parsed (every pin plain, no other table before it)."""
    first = len(errors)
    alone = not pins
    plain = True
    tables = iter(tables)
    for table in tables:
        if len(errors) - first > MAX_SLICED_TABLE_ERRORS:
            errors.append((path, "too many errors; the rest of the table was not checked"))
            for _ in tables:       # still parsed: a syntax error further on is reported too
                pass
            break
        # Slices of one object cannot conflict with each other (a repeated key is
        # last-wins, as in a whole parse), so unless another table pinned something, a
        # slice is checked on its own: no lookups in the table built so far (0.5 s of a
        # million-pin reload).
        into = {} if alone else pins
        plain &= check_pins(table, path, stamp_names, into, modes, errors, origin=origin)
        if into is not pins:
            pins.update(into)
    return plain and alone


def load_bytes(data: bytes, *, fmt: str, source: str, base_dir: str = ".") -> ValidConfig:
    return validate_document(parse_document(data, fmt), source=source, base_dir=base_dir,
                             digest_parts=(data,))


def read_config_file(path: str) -> bytes:
    """A config file's bytes; an unreadable file is a ConfigError like any other."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror}")]) from None


def load_config(path: str) -> ValidConfig:
    """Read and validate a config file; raise ConfigError with every error."""
    data = read_config_file(path)
    return load_bytes(data, fmt=format_of(path), source=os.path.abspath(path),
                      base_dir=os.path.dirname(os.path.abspath(path)))
