"""The config schema: one pydantic model for TOML and JSON alike.

Every section forbids unknown keys, so a typo is an error with its path rather than a
silently ignored setting. Defaults here are the documented defaults (docs/config.md);
the JSON Schema in config/schema.json is generated from these classes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from router.config.addresses import parse_hostport, parse_network
from router.config.units import parse_duration, parse_size


def _check_hostport(value: str) -> str:
    parse_hostport(value)
    return value


HostPort = Annotated[str, AfterValidator(_check_hostport)]


def _check_network(value: str) -> str:
    parse_network(value)
    return value


IpNetwork = Annotated[str, AfterValidator(_check_network)]

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(us|µs|ms|s|m|h)\s*)+$"},
            {"type": "number", "minimum": 0},
        ],
        "description": "A duration: seconds as a number, or a string such as \"150ms\", \"2s\", \"1m30s\".",
    }),
]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([KkMmGgTt]i?[Bb]?|[Bb])?\s*$"},
            {"type": "integer", "minimum": 0},
        ],
        "description": "A size: bytes as an integer, or a string such as \"64KiB\", \"100MiB\".",
    }),
]
Source = Literal["jwt", "subdomain", "header", "mtls"]
StampState = Literal["active", "draining", "offline"]
PinMode = Literal["read-write", "read-only", "paused"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Mozilla's "intermediate" TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults, all
# strong). The DHE suites stay in the list as Mozilla gives it; without DH parameters
# OpenSSL never picks them.
MOZILLA_INTERMEDIATE = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")
DEFAULT_HTTP = "0.0.0.0:8080"


class Certificate(Section):
    cert_file: str = Field(description="PEM certificate chain: the leaf first, then its intermediates.")
    key_file: str = Field(description="PEM private key of the leaf (RSA or ECDSA), unencrypted.")


class Listen(Section):
    http: HostPort | None = Field(None, description="Address of the plain-HTTP proxy listener, host:port. "
                                  "Default \"0.0.0.0:8080\" unless https is set.")
    https: HostPort | None = Field(None, description="Address of the TLS proxy listener, host:port; needs certificates.")
    certificates: list[Certificate] = Field([], description="Certificate/key pairs served on https, chosen by SNI "
                                            "among the names in the certificates; the first serves clients without SNI.")
    require_sni: bool = Field(False, description="Refuse TLS handshakes without SNI or with a name no certificate covers "
                              "(alert unrecognized_name), instead of serving the first certificate.")
    redirect_http: bool = Field(False, description="The http listener answers every request 308 to the same URL on https.")
    tls_ciphers: str = Field(MOZILLA_INTERMEDIATE, min_length=1, description="OpenSSL cipher list for TLS 1.2 "
                             "(TLS 1.3 suites are OpenSSL's, all strong). Default: Mozilla's \"intermediate\" list.")
    client_ca_file: str | None = Field(None, description="PEM CA bundle that client certificates must chain to (mTLS); "
                                       "unset: no client certificate is asked for.")
    client_verify: Literal["required", "optional"] = Field("required", description="With client_ca_file: \"required\" "
                                                           "refuses a handshake without a valid client certificate; "
                                                           "\"optional\" accepts one without (an invalid one is still refused).")
    max_connections: int = Field(10000, ge=1, description="Open client connections at most, per worker process; further ones are closed at accept.")
    backlog: int = Field(1024, ge=1, description="listen(2) backlog.")
    forwarded_proto: Literal["http", "https"] = Field("http", description="X-Forwarded-Proto sent upstream: the scheme clients used to reach what is in front of the router (\"https\" when a load balancer in front ends TLS). A trusted proxy's own X-Forwarded-Proto wins.")
    trusted_proxies: list[IpNetwork] = Field([], description="Addresses or CIDR networks of the proxies in front (load balancers). From them, X-Forwarded-Proto is kept and the client address (geo placement, the access log) is read from X-Forwarded-For; from anyone else, neither.")
    proxy_protocol: bool = Field(False, description="Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy's send-proxy or an AWS NLB sends it), which gives the client address; a connection without a valid one is closed. Only for a listener that nothing but the balancer can reach.")
    reuse_port: bool = Field(False, description="Let a second, independent router share the proxy port (another version side by side); without it a router does not start on a port something listens on. Not needed to use every core: each worker of one router has its own SO_REUSEPORT socket on the port anyway. Each router needs its own admin.listen and control.state_dir.")

    @model_validator(mode="before")
    @classmethod
    def _default_http(cls, data: Any) -> Any:
        # Plain HTTP is on by default, and optional once there is an https listener.
        if isinstance(data, dict) and "http" not in data and not data.get("https"):
            return {**data, "http": DEFAULT_HTTP}
        return data


def _check_workers(value: Any) -> Any:
    if value == "auto" or (type(value) is int and value >= 1):
        return value
    raise ValueError(f'workers is "auto" (one per CPU this process may run on) or a whole number >= 1, not {value!r}')


Workers = Annotated[Literal["auto"] | int, BeforeValidator(_check_workers), WithJsonSchema({
    "anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1}],
    "description": "Worker processes: \"auto\" (one per CPU this process may run on) or a number >= 1.",
})]


class Process(Section):
    workers: Workers = Field("auto", description="Worker processes serving the data path: \"auto\" is one per CPU this process may run on (os.sched_getaffinity); a number >= 1 is that many (more than the CPUs is allowed, with a warning). The supervisor holds the admin API, config sources and health probes.")


class Admin(Section):
    listen: HostPort = Field("127.0.0.1:9901", description="Admin API address; loopback unless you mean otherwise.")
    token_file: str | None = Field(None, description="File holding the bearer token every write endpoint requires. No file: writes are refused.")
    access_log: bool = Field(False, description="Write one JSON line per request to stdout.")


class Routing(Section):
    sources: list[Source] = Field(["subdomain", "header"], min_length=1, description="Tenant sources, tried in order.")
    unpinned: Literal["hash", "reject"] = Field("hash", description="What happens to a tenant without a pin.")
    anonymous: str = Field("reject", pattern=r"^(geo|reject|stamp:.+)$", description="Requests without a tenant: \"geo\", \"reject\" or \"stamp:NAME\".")
    tenant_header: str = Field("X-Tenant-ID", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", description="Header read by the `header` source and always set upstream.")
    stamp_header: str = Field("X-Stamp", pattern=r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+)?$", description="Response header naming the serving stamp; \"\" turns it off.")
    domains: list[str] = Field([], description="Domains under which `<tenant>.<domain>` names a tenant.")
    strict_hosts: bool = Field(False, description="Answer 421 to a Host that is neither a configured domain nor one label under one.")
    retry_after: Duration = Field(5.0, description="Retry-After sent with 503 when no stamp can serve.")
    balance: Literal["least_request", "round_robin"] = Field("least_request", description="Backend choice within a stamp.")


# `none` is not here and cannot be configured; HS* need secret_file (router.config.validate).
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                       "EdDSA", "HS256", "HS384", "HS512"]


class Jwt(Section):
    claim: str = Field("tid", min_length=1, description="Claim holding the tenant id; a dotted path reaches into objects (\"org.id\").")
    algorithms: list[JwtAlgorithm] = Field(["RS256", "ES256"], min_length=1, description="Allowed signature algorithms.")
    jwks_url: str | None = Field(None, description="JWKS endpoint, fetched before ready and refreshed in the background.")
    jwks_file: str | None = Field(None, description="JWKS document on disk.")
    secret_file: str | None = Field(None, description="Shared secret for HS256/384/512.")
    issuer: str | None = Field(None, description="Required `iss`.")
    audience: str | list[str] | None = Field(None, description="Accepted `aud` value(s).")
    leeway: Duration = Field(30.0, description="Clock skew allowed on exp and nbf.")
    jwks_refresh: Duration = Field(300.0, description="JWKS refresh interval when the response has no Cache-Control max-age.")
    jwks_min_refresh: Duration = Field(60.0, description="Lower bound applied to a JWKS max-age.")
    jwks_max_refresh: Duration = Field(86400.0, description="Upper bound applied to a JWKS max-age.")
    unknown_kid_refetch: Duration = Field(30.0, description="At most one JWKS refetch per this interval on an unknown `kid`.")
    cache_size: int = Field(100000, ge=0, description="Verified tokens kept; 0 turns the cache off.")
    max_token_bytes: int = Field(8192, ge=64, description="Longer bearer tokens are refused without parsing.")
    residency_claim: str | None = Field(None, min_length=1, description="Claim holding the data residency of the token's tenant (a dotted path reaches into objects), read when `placement.residency_from` lists \"claim\".")


class Geo(Section):
    header: str = Field("CF-IPCountry", description="Header carrying the client's ISO country code.")
    default_region: str | None = Field(None, description="Region for unknown or missing countries.")
    regions: dict[str, list[str]] = Field({}, description="Region -> country codes.")


class Timeouts(Section):
    connect: Duration = Field(2.0, description="Upstream TCP connect.")
    request_header: Duration = Field(10.0, description="Time a client has to send a complete request head.")
    upstream: Duration = Field(30.0, description="Time an exchange may go without progress: from the end of the request (or its last body bytes) to the response head, and between reads of the response body. Past it, the side it was waiting for is cut off: a backend gets 504 and a failure; a client that stopped sending its body gets 408, one that stopped reading its response is disconnected, and neither is counted against the backend.")
    idle: Duration = Field(60.0, description="Keep-alive idle time of a client connection.")
    drain: Duration = Field(30.0, description="On SIGTERM, how long in-flight requests may take to finish.")
    tls_handshake: Duration = Field(10.0, gt=0, description="Time a client has to complete the TLS handshake on listen.https; "
                                    "a handshake in progress counts against listen.max_connections.")
    grace: Duration = Field(0.0, description="On SIGTERM, how long to keep accepting while /readyz answers 503, "
                            "so load balancers stop sending before the listener closes (HAProxy's `grace`).")


class Limits(Section):
    max_header_bytes: Size = Field(65536, description="Largest request head; larger is 431. A backend's response head larger than this is 502.")
    max_body_bytes: Size = Field(100 * 1024**2, description="Largest request body; larger is 413.")
    tenant_rate: float = Field(0.0, ge=0, allow_inf_nan=False, description="Requests per second each tenant may send through this router process, after its burst; more is 429 with Retry-After. 0: no limit.")
    tenant_burst: int | None = Field(None, ge=1, description="Requests a tenant may send at once on top of tenant_rate (the bucket size). Default: one second's worth, at least 1.")
    max_memory: Size | None = Field(None, ge=1, description="Resident memory of each worker process past which it stops accepting connections and answers new requests 503 with Retry-After, until it is under 90 % of it again; a worker that cannot get under it with nothing left to shed is replaced. Default: no limit.")


class Upstream(Section):
    max_idle_per_backend: int = Field(64, ge=0, description="Idle keep-alive connections kept per backend.")
    idle_timeout: Duration = Field(30.0, description="An idle pooled connection is closed after this.")


def _check_probe_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise ValueError("a probe path starts with / and holds no spaces")
    return value


class HealthCheck(Section):
    enabled: bool = Field(True, description="Active probes for this stamp's backends.")
    path: Annotated[str, AfterValidator(_check_probe_path)] = Field("/healthz", description="Probe path; 2xx and 3xx count as healthy.")
    # Zero would probe in a tight loop.
    interval: Duration = Field(2.0, gt=0, description="Time between probes (with up to 10 % jitter).")
    timeout: Duration = Field(1.0, gt=0, description="Probe timeout.")
    rise: int = Field(2, ge=1, description="Successes in a row that make a backend healthy.")
    fall: int = Field(3, ge=1, description="Failures in a row that make a backend unhealthy.")


class Outlier(Section):
    consecutive_failures: int = Field(5, ge=1, description="Connect failures, resets or 5xx in a row that eject a backend.")
    consecutive_5xx: bool = Field(True, description="Count 5xx responses as failures.")
    base_ejection: Duration = Field(30.0, description="First ejection time; doubles with each ejection.")
    max_ejection: Duration = Field(300.0, description="Cap on the ejection time.")
    max_ejected_fraction: float = Field(0.5, ge=0, le=1, description="Share of a stamp's backends that may be ejected passively at once.")


class Retry(Section):
    attempts: int = Field(1, ge=0, description="Retries on another backend of the same stamp when safe.")
    budget: float = Field(0.2, ge=0, le=1, description="Retries in flight at most this share of requests in flight (at least 3).")


class StampTls(Section):
    enabled: bool = Field(True, description="Speak TLS to this stamp's backends (the table's presence turns it on).")
    verify: bool = Field(True, description="Verify the backend's certificate chain and name; false only for a test stamp.")
    ca_file: str | None = Field(None, description="PEM CA bundle to verify against; default: the system trust store.")
    server_name: str | None = Field(None, description="SNI sent and name verified; default: each backend's host.")
    client_cert_file: str | None = Field(None, description="PEM client certificate chain presented to the backends (mTLS).")
    client_key_file: str | None = Field(None, description="Its private key.")


class Stamp(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="Unique stamp name.")
    region: str = Field(description="Region, used by geo routing and DNS record filters.")
    residency: str | None = Field(None, description="Data-residency boundary; defaults to region.")
    backends: list[HostPort] = Field(min_length=1, description="host:port of each backend.")
    public: list[str] = Field([], description="Addresses the DNS updater publishes for this stamp.")
    weight: int = Field(100, ge=0, le=10000, description="Share of hash placements and DNS weight; 0 takes no new placements.")
    state: StampState = Field("active", description="active, draining or offline.")
    failover: list[str] = Field([], description="Stamps that serve this one's traffic when it is down, in order.")
    allow_cross_residency_failover: bool = Field(False, description="Allow `failover` to name stamps of another residency.")
    panic_threshold: float = Field(0.0, ge=0, le=1, description="Below this share of healthy backends, route to all of them (0 = off).")
    health: HealthCheck = Field(default_factory=HealthCheck)
    tls: StampTls | None = Field(None, description="TLS to the backends (and their health probes).")

    @property
    def residency_name(self) -> str:
        return self.residency or self.region


def _pin_from_str(value: Any) -> Any:
    return {"stamp": value} if isinstance(value, str) else value


class Pin(Section):
    stamp: str
    mode: PinMode = "read-write"


# The object form is written out: a "$ref" to Pin would dangle, because WithJsonSchema
# replaces Pin's own schema and so pydantic never emits its definition.
PinEntry = Annotated[Pin, BeforeValidator(_pin_from_str), WithJsonSchema({
    "anyOf": [
        {"type": "string", "description": "stamp name"},
        {"type": "object", "additionalProperties": False, "required": ["stamp"], "properties": {
            "stamp": {"type": "string", "description": "stamp name"},
            "mode": {"enum": list(get_args(PinMode)), "default": "read-write"},
        }},
    ],
})]


ResidencyFrom = Literal["domain", "claim", "geo"]


class Placement(Section):
    residency_from: list[ResidencyFrom] = Field([], description="How a request's data residency is known, tried in order: \"domain\" (domain_residency), \"claim\" (jwt.residency_claim), \"geo\" (the geo header's region). With this or default_residency set, a tenant without a pin is placed only among the active stamps of its request's residency.")
    default_residency: str | None = Field(None, description="The residency of a request that residency_from says nothing about (this router's own).")
    domain_residency: dict[str, str] = Field({}, description="Domain -> residency: a request whose Host is the domain or under it has that residency.")


def _check_etcd_endpoint(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/"):
        raise ValueError(f"an etcd endpoint is http://HOST:PORT or https://HOST:PORT, not {value!r}")
    return value


class Etcd(Section):
    """etcd as the config source (router.control.etcd_source; docs/control-plane.md)."""

    endpoints: list[Annotated[str, AfterValidator(_check_etcd_endpoint)]] = Field(
        min_length=1, description="etcd client URLs, tried in order (http://HOST:PORT or https://HOST:PORT).")
    prefix: str = Field("/stamp-router", min_length=1, description="Key prefix: the config is PREFIX/config, pins PREFIX/tenants/<id>.")
    ca_file: str | None = Field(None, description="CA bundle to verify etcd's certificate (https endpoints).")
    cert_file: str | None = Field(None, description="Client certificate (PEM) for etcd's --client-cert-auth.")
    key_file: str | None = Field(None, description="Private key of cert_file.")
    user: str | None = Field(None, description="etcd user (etcd auth); needs password_file.")
    password_file: str | None = Field(None, description="File holding the etcd user's password.")
    timeout: Duration = Field(5.0, gt=0, description="Deadline of one etcd request, and of the health check of a watch.")
    max_backoff: Duration = Field(30.0, gt=0, description="Cap on the retry delay while etcd is unreachable.")

    @model_validator(mode="after")
    def _consistent(self) -> "Etcd":
        if self.prefix.endswith("/") and self.prefix != "/":
            raise ValueError(f"prefix must not end with '/' ({self.prefix!r}): keys are PREFIX/config and PREFIX/tenants/ID")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        if bool(self.user) != bool(self.password_file):
            raise ValueError("user and password_file go together")
        tls = self.ca_file or self.cert_file
        if tls and not all(e.startswith("https://") for e in self.endpoints):
            raise ValueError("ca_file or cert_file is set: every endpoint must be https://")
        return self


class Control(Section):
    url: str | None = Field(None, description="Control-plane URL polled for the config (JSON or TOML).")
    etcd: Etcd | None = Field(None, description="Read the config and pins from etcd and watch them (instead of url).")
    interval: Duration = Field(10.0, gt=0, description="Poll interval.")
    max_backoff: Duration = Field(300.0, description="Cap on the retry delay after failed polls.")
    token_file: str | None = Field(None, description="Bearer token sent to the control plane.")
    watch_file: bool = Field(True, description="Reload the config file when it changes (and on SIGHUP).")
    watch_interval: Duration = Field(0.25, gt=0, description="How often the config file (and its tenants_file) is checked for changes: a few stat calls each time. On Linux, inotify also says when to look, so a change is usually read at once.")
    state_dir: str = Field("state", description="Where the last known good config is kept.")
    max_drop_fraction: float = Field(0.5, ge=0, le=1, description="Refuse a candidate that drops more than this share of pins or stamps unless forced.")

    @model_validator(mode="after")
    def _one_source(self) -> "Control":
        if self.url and self.etcd is not None:
            raise ValueError("control.url and control.etcd are two sources of the config: set one")
        return self


def _check_hook_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ValueError(f"a hook URL is http://HOST[:PORT]/PATH or https://..., not {value!r}")
    return value


class Migration(Section):
    """Moving a tenant between stamps (POST /tenants/{id}/move, stamp-router migrate;
    docs/operations.md "Moving a tenant")."""

    hook_url: Annotated[str, AfterValidator(_check_hook_url)] | None = Field(None, description="Called once per move, after the tenant's work on the old stamp has drained and before the pin flips: a POST of {\"tenant\", \"from\", \"to\"} that answers 2xx (an empty body or a JSON object without \"ok\": false) once the tenant's data is in place on the new stamp. A redirect, another status or a body that is not JSON fails the move, which rolls back.")
    hook_command: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1, description="Instead of hook_url: a command (argv, no shell) run with TENANT, FROM_STAMP and TO_STAMP in its environment; exit status 0 means the data is in place.")
    timeout: Duration = Field(60.0, gt=0, description="Default deadline of a whole move (pause, drain, hook, flip) when the move request names none; past it the move rolls back.")
    hold_timeout: Duration = Field(10.0, gt=0, description="Longest a request of a paused tenant is held; then it is answered 503 with Retry-After.")
    hold_max_requests: int = Field(1000, ge=1, le=100000, description="Requests of one paused tenant held at once by this router (shared among its workers); more are answered 503 with Retry-After at once.")

    @model_validator(mode="after")
    def _one_hook(self) -> "Migration":
        if self.hook_url and self.hook_command:
            raise ValueError("hook_url and hook_command are two hooks: set one")
        return self


class Config(Section):
    version: str | None = Field(None, max_length=128, description="Version label shown by GET /config; defaults to the digest's first 12 hex digits.")
    listen: Listen = Field(default_factory=Listen)
    admin: Admin = Field(default_factory=Admin)
    routing: Routing = Field(default_factory=Routing)
    jwt: Jwt | None = None
    geo: Geo = Field(default_factory=Geo)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    limits: Limits = Field(default_factory=Limits)
    upstream: Upstream = Field(default_factory=Upstream)
    outlier: Outlier = Field(default_factory=Outlier)
    retry: Retry = Field(default_factory=Retry)
    placement: Placement = Field(default_factory=Placement)
    control: Control = Field(default_factory=Control)
    process: Process = Field(default_factory=Process)
    migration: Migration = Field(default_factory=Migration)
    stamps: list[Stamp] = Field(min_length=1)
    # Pins are validated by router.config.load in one tight loop (a million of them must
    # validate in well under a second); the model keeps the field for the JSON Schema.
    tenants: dict[str, PinEntry] = Field({}, description="Pins: tenant -> stamp, or {stamp, mode}.")
    tenants_file: str | None = Field(None, description="JSON object of tenant -> pin, merged with [tenants].")


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stamp-router config"
    return schema
