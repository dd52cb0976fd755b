"""The DNS updater's config (TOML): one pydantic model, every error with its path.

Sections are documented in docs/dns.md. Unknown keys are errors, as in the router's config.
Relative file paths (keys, state, router config, metrics textfile) are taken relative to
the config file's directory, so a config and its key can move together.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal, Union

import dns.exception
import dns.name
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from router.config.load import loc_to_path, parse_document, read_config_file
from router.config.messages import schema_message
from router.config.schema import Duration, Etcd, HostPort
from router.errors import ConfigError

RecordType = Literal["A", "AAAA", "SRV"]
Policy = Literal["sync", "upsert-only", "create-only"]
_PROVIDER_KINDS = ("rfc2136", "powerdns", "route53")


def _zone_name(value: str) -> str:
    try:
        name = dns.name.from_text(value)
    except dns.exception.DNSException as exc:
        raise ValueError(f"{value!r} is not a DNS name: {exc}") from None
    if name == dns.name.root:
        raise ValueError("the root zone cannot be managed")
    return name.to_text().lower()


ZoneName = Annotated[str, AfterValidator(_zone_name)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Section):
    stamps_url: str | None = Field(None, pattern=r"^https?://", description="A router's admin GET /stamps.")
    config: str | None = Field(None, description="A router config; the updater probes its backends itself.")
    timeout: Duration = Field(2.0, gt=0, description="Deadline for one registry read (and for each probe).")


class Rfc2136(Section):
    kind: Literal["rfc2136"]
    server: HostPort = Field(description="Primary server, host:port (TCP for AXFR and UPDATE).")
    zone: ZoneName
    tsig_key_file: str = Field(description="tsig-keygen output; the key signs every transfer and update.")
    tsig_key_name: str | None = Field(None, description="Which key of the file; needed only if it holds several.")
    timeout: Duration = Field(5.0, gt=0)


class PowerDns(Section):
    kind: Literal["powerdns"]
    api_url: str = Field(pattern=r"^https?://", description="Base URL of the PowerDNS webserver, e.g. http://127.0.0.1:8081.")
    api_key_file: str = Field(description="File holding the X-API-Key value.")
    server_id: str = "localhost"
    zone: ZoneName
    server: HostPort | None = Field(None, description="The DNS listener; when set, every written LUA record is queried once (a bad one answers SERVFAIL).")
    timeout: Duration = Field(5.0, gt=0)


class Route53(Section):
    kind: Literal["route53"]
    hosted_zone_id: str = Field(pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
    zone: ZoneName = Field(description="The hosted zone's name; checked against Route 53 at the first read.")
    region: str | None = None
    timeout: Duration = Field(10.0, gt=0)


Provider = Annotated[Union[Rfc2136, PowerDns, Route53], Field(discriminator="kind")]


class Sync(Section):
    interval: Duration = Field(10.0, gt=0, description="Time between passes of the loop.")
    policy: Policy = Field("sync", description="sync: create, update, delete; upsert-only: no deletes; create-only: only new names.")
    owner_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="Written into ownership TXT records.")
    max_change_fraction: float = Field(0.3, ge=0, le=1, description="Refuse (without --force) a plan updating or deleting more than this share of owned records.")
    min_owned_records: int = Field(10, ge=0, description="The fraction check applies once this many records are owned (octoDNS's MIN_EXISTING_RECORDS).")
    ttl: int = Field(30, ge=0, le=2147483647)
    remove_after: int = Field(3, ge=1, description="Unhealthy reads in a row before a stamp leaves the records.")
    state_file: str | None = Field(None, description="Keeps the hysteresis counts across restarts and --once runs; default state/dns-OWNER_ID.json beside this file ([lock]: etcd).")


class Metrics(Section):
    listen: HostPort | None = Field(None, description="Serve GET /metrics here (loop mode).")
    textfile: str | None = Field(None, description="Write node_exporter textfile metrics here after each pass.")


class RecordEntry(Section):
    name: str = Field(description="Relative to the zone (\"api\", \"@\"), or absolute inside it.")
    type: RecordType
    region: str | None = Field(None, description="Only stamps of this region; omit for all.")
    ttl: int | None = Field(None, ge=0, le=2147483647, description="Overrides [sync] ttl.")
    target: str | None = Field(None, description="SRV only: target host, with {stamp} for the stamp's name.")
    port: int | None = Field(None, ge=0, le=65535, description="SRV only.")
    priority: int = Field(10, ge=0, le=65535, description="SRV only.")

    @model_validator(mode="after")
    def _srv_fields(self):
        if self.type == "SRV":
            if self.target is None or self.port is None:
                raise ValueError("an SRV entry needs target and port")
            if "{stamp}" not in self.target:
                raise ValueError("an SRV target needs {stamp}, so each stamp's weight has its own target")
        elif self.target is not None or self.port is not None:
            raise ValueError(f"target and port are for SRV entries, not {self.type}")
        return self


class Lock(Section):
    """One active updater among replicas (router.dns.lock; docs/dns.md)."""

    kind: Literal["etcd"] = Field(description="Where the lock lives: etcd.")
    etcd: Etcd = Field(description="Which etcd: the same table as a router's [control.etcd]; the lock key is PREFIX/dns-lock/NAME.")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="The lock's name; replicas of one updater share it. Defaults to sync.owner_id.")
    ttl: int = Field(10, ge=3, le=3600, description="Lease seconds: a replica that dies is replaced within this; a cut-off one stops writing within half of it.")
    identity: str | None = Field(None, description="What the lock key holds while this replica is active (logged by the others); defaults to HOST:PID.")


class DnsConfig(Section):
    source: Source
    provider: Provider
    sync: Sync
    metrics: Metrics = Field(default_factory=Metrics)
    lock: Lock | None = None
    records: list[RecordEntry] = Field(min_length=1)

    @property
    def zone(self) -> str:
        return self.provider.zone


def absolute_name(name: str, zone: str) -> str:
    """`api` -> `api.example.com.`; `@` -> the zone; an absolute name stays as it is."""
    if name == "@":
        return zone
    if name.endswith("."):
        return name.lower()
    return f"{name}.{zone}".lower()


def _section(doc: dict, name: str) -> dict:
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def _cross_checks(doc: dict) -> list[tuple[str, str]]:
    """Checks across fields, run on the raw document so that their errors come out
    together with the schema's rather than after they are fixed."""
    errors = []
    source = _section(doc, "source")
    if "source" in doc and (source.get("stamps_url") is None) == (source.get("config") is None):
        errors.append(("source", "give exactly one of stamps_url and config"))
    metrics = _section(doc, "metrics")
    if metrics.get("listen") and metrics.get("textfile"):
        errors.append(("metrics", "give listen or textfile, not both"))
    if isinstance(doc.get("lock"), dict) and _section(doc, "sync").get("state_file") is not None:
        errors.append(("sync.state_file", "with [lock], the hysteresis counts live in etcd beside the lock, "
                       "where every replica reads them: remove state_file"))
    return errors + _check_names(doc)


def _check_names(doc: dict) -> list[tuple[str, str]]:
    provider = _section(doc, "provider")
    try:
        zone_text = _zone_name(provider.get("zone"))
    except (ValueError, AttributeError, TypeError):
        return []
    zone = dns.name.from_text(zone_text)
    errors = []
    seen: dict[tuple[str, str], int] = {}
    entries = doc.get("records") if isinstance(doc.get("records"), list) else []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        fqdn = absolute_name(entry["name"], zone_text)
        try:
            name = dns.name.from_text(fqdn)
        except dns.exception.DNSException as exc:
            errors.append((f"records[{i}].name", f"{entry['name']!r} is not a DNS name: {exc}"))
            continue
        if not name.is_subdomain(zone):
            errors.append((f"records[{i}].name", f"{fqdn} is outside the zone {zone_text}"))
        elif name.labels[0].startswith(b"_stamp-owner-"):
            errors.append((f"records[{i}].name", "names starting _stamp-owner- hold ownership records"))
        target = entry.get("target")
        if isinstance(target, str):
            try:
                dns.name.from_text(target.replace("{stamp}", "x"), origin=zone)
            except dns.exception.DNSException as exc:
                errors.append((f"records[{i}].target", f"{target!r} is not a host name: {exc}"))
        key = (fqdn, str(entry.get("type")))
        if key in seen:
            errors.append((f"records[{i}]", f"{fqdn} {key[1]} is already records[{seen[key]}]"))
        seen.setdefault(key, i)
    return errors


def _schema_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for err in exc.errors(include_url=False):
        # A discriminated union puts the chosen tag into the location; the path the
        # operator wrote has no such step.
        loc = tuple(p for p in err["loc"] if p not in _PROVIDER_KINDS and not str(p).startswith("function-"))
        msg = schema_message(err)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "union_tag_invalid":
            msg = f"kind must be one of {', '.join(_PROVIDER_KINDS)}"
            loc = loc + ("kind",)
        elif err["type"] == "union_tag_not_found":
            msg = f"missing kind ({', '.join(_PROVIDER_KINDS)})"
            loc = loc + ("kind",)
        errors.append((loc_to_path(loc), msg))
    return errors


_PATH_FIELDS = {
    ("source", "config"), ("provider", "tsig_key_file"), ("provider", "api_key_file"),
    ("sync", "state_file"), ("metrics", "textfile"),
}


def _resolve_paths(cfg: DnsConfig, base_dir: str) -> DnsConfig:
    updates = {}
    for section, field_name in _PATH_FIELDS:
        part = getattr(cfg, section)
        value = getattr(part, field_name, None)
        if value is not None and not os.path.isabs(value):
            updates.setdefault(section, part)
            updates[section] = updates[section].model_copy(update={field_name: os.path.join(base_dir, value)})
    return cfg.model_copy(update=updates)


def parse_dns_config(doc: dict, base_dir: str = ".") -> DnsConfig:
    """Validate a parsed document; raise ConfigError listing every error with its path."""
    errors = []
    try:
        cfg = DnsConfig.model_validate(doc)
    except ValidationError as exc:
        errors.extend(_schema_errors(exc))
    errors.extend(_cross_checks(doc))
    if errors:
        raise ConfigError(errors)
    return _resolve_paths(cfg, os.path.abspath(base_dir))


def load_dns_config(path: str) -> DnsConfig:
    data = read_config_file(path)
    return parse_dns_config(parse_document(data, "toml"), os.path.dirname(os.path.abspath(path)))


def srv_target(template: str, stamp: str, zone: str) -> str:
    target = template.replace("{stamp}", stamp)
    return absolute_name(target, zone)
