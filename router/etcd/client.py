"""A small asyncio client for etcd v3, speaking its JSON gateway over aiohttp.

etcd serves the v3 API as JSON on its client port (grpc-gateway): every call is a POST
of the request message as JSON, int64 fields come back as strings, bytes fields (keys,
values) are base64, and fields at their zero value are left out (an event without a
`type` is a PUT). A watch is one long POST whose response is a stream of JSON objects,
one a line. Why not a gRPC client: router.etcd's docstring in docs/control-plane.md.

Endpoints are tried in order: a call that cannot reach one goes on to the next, and the
one that answered is tried first next time. With a user, the client authenticates once
and again whenever etcd says the token is no longer valid (simple tokens expire).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import aiohttp
import orjson

from router.etcd.errors import EtcdAuthError, EtcdCompacted, EtcdError, EtcdLeaseLost, EtcdUnavailable, from_answer

# The largest watch response line accepted: a transaction's events arrive as one line,
# and a transaction is bounded by the server's request size (1.5 MiB by default).
MAX_LINE = 256 * 1024**2


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with prefix."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"          # every key


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0

    @classmethod
    def of(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(unb64(kv.get("key")), unb64(kv.get("value")), int(kv.get("mod_revision", 0)),
                   int(kv.get("create_revision", 0)), int(kv.get("lease", 0)))


@dataclass(frozen=True, slots=True)
class Event:
    deleted: bool
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int                     # the store's revision the read was made at
    kvs: list[KeyValue]
    more: bool
    count: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WatchResponse:
    revision: int
    events: list[Event]
    # The first answer of a watch: its revision is the store's, not a promise that every
    # event up to it was sent (events from the start revision may still be on the way).
    created: bool = False


@dataclass(frozen=True)
class Tls:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


# Operations of a transaction, in the gateway's JSON form.
def put_op(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    req: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        req["lease"] = str(lease)
    return {"request_put": req}


def delete_op(key: bytes) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def compare_mod_revision(key: bytes, op: str, revision: int, range_end: bytes | None = None) -> dict[str, Any]:
    """A compare on the last revision that modified `key` (0 for a missing key), or every
    key in [key, range_end); op is EQUAL, GREATER, LESS or NOT_EQUAL."""
    cmp: dict[str, Any] = {"key": b64(key), "target": "MOD", "result": op, "mod_revision": str(revision)}
    if range_end is not None:
        cmp["range_end"] = b64(range_end)
    return cmp


def compare_absent(key: bytes) -> dict[str, Any]:
    """True while `key` does not exist (its create revision is 0)."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def compare_lease(key: bytes, lease: int) -> dict[str, Any]:
    """True while `key` is held by `lease` (fencing a write on a lock's ownership)."""
    return {"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": str(lease)}


class EtcdClient:
    def __init__(self, endpoints: list[str], *, tls: Tls | None = None, user: str | None = None,
                 password: str | None = None, timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        # No I/O here: the session and the TLS context are made by the first call.
        self._endpoints = [e.rstrip("/") for e in endpoints]
        self._tls = tls
        self._user, self._password = user, password
        self.timeout = timeout
        self._token: str | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return self._endpoints[0]

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            ssl_ctx: ssl.SSLContext | bool = self._tls.context() if self._tls is not None else False
            # One connection per endpoint is enough for unary calls; watches hold their own.
            conn = aiohttp.TCPConnector(ssl=ssl_ctx, limit=0, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=conn, json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- transport ---------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    async def call(self, path: str, body: dict[str, Any], *, timeout: float | None = None,
                   endpoint: str | None = None) -> dict[str, Any]:
        """POST one request to the first endpoint that answers (only `endpoint`, if
        given); the answer's JSON, or a typed EtcdError."""
        if self._user and self._token is None and path != "/v3/auth/authenticate":
            await self.authenticate()
        for attempt in range(2):
            try:
                return await self._call_any(path, body, timeout, endpoint)
            except EtcdAuthError:
                if not self._user or attempt or path == "/v3/auth/authenticate":
                    raise
                await self.authenticate()     # the token expired: once more with a new one
        raise AssertionError("unreachable")

    async def _call_any(self, path: str, body: dict[str, Any], timeout: float | None,
                        only: str | None = None) -> dict[str, Any]:
        session = self._open()
        payload = orjson.dumps(body)
        errors = []
        for endpoint in [only] if only else list(self._endpoints):
            try:
                async with session.post(endpoint + path, data=payload, headers=self._headers(),
                                        timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as resp:
                    answer = orjson.loads(await resp.read() or b"{}")
                    if resp.status != 200 or "error" in answer:
                        raise from_answer(answer, resp.status)
                    self._prefer(endpoint)
                    return answer
            except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
                errors.append(f"{endpoint}: {exc.__class__.__name__}: {exc}".rstrip(": "))
            except EtcdUnavailable as exc:
                errors.append(f"{endpoint}: {exc}")
        raise EtcdUnavailable("; ".join(errors))

    def _prefer(self, endpoint: str) -> None:
        if self._endpoints[0] != endpoint:
            self._endpoints.remove(endpoint)
            self._endpoints.insert(0, endpoint)

    def demote(self, endpoint: str) -> None:
        """Try `endpoint` last from now on (a watch on it broke)."""
        if endpoint in self._endpoints:
            self._endpoints.remove(endpoint)
            self._endpoints.append(endpoint)

    async def authenticate(self) -> None:
        self._token = None        # etcd refuses an authenticate carrying an expired token
        answer = await self._call_any("/v3/auth/authenticate", {"name": self._user, "password": self._password}, None)
        self._token = answer.get("token")
        if not self._token:
            raise EtcdAuthError(f"etcd gave no token for user {self._user!r}")

    # -- KV ----------------------------------------------------------------------------
    async def range(self, key: bytes, range_end: bytes | None = None, *, revision: int = 0, limit: int = 0,
                    count_only: bool = False, timeout: float | None = None,
                    endpoint: str | None = None) -> RangeResult:
        """A linearizable read (it needs the cluster's leader); only at `endpoint`, if given."""
        answer = await self._range(key, range_end, revision, limit, count_only, timeout, endpoint)
        return RangeResult(int(answer["header"]["revision"]), _decode(answer.get("kvs", ())),
                           bool(answer.get("more")), int(answer.get("count", 0)))

    async def _range(self, key: bytes, range_end: bytes | None, revision: int, limit: int, count_only: bool = False,
                     timeout: float | None = None, endpoint: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            # No sort_order: etcd returns keys in ascending order anyway, and with any sort
            # asked for it may read the whole range for every page (etcd 3.4 applier).
            body["limit"] = str(limit)
        if count_only:
            body["count_only"] = True
        return await self.call("/v3/kv/range", body, timeout=timeout, endpoint=endpoint)

    async def get(self, key: bytes) -> KeyValue | None:
        kvs = (await self.range(key)).kvs
        return kvs[0] if kvs else None

    async def range_pages(self, prefix: bytes, *, page: int = 10_000,
                          revision: int = 0) -> AsyncIterator[tuple[int, list[KeyValue]]]:
        """Every key under `prefix`, read in pages all at one revision (that of the first
        page unless given): (revision, page) pairs. EtcdCompacted if that revision is
        compacted away before the last page is read.

        While a page is decoded (in a worker thread: base64 and ints for each key cost
        about 10 us, a second per 100,000 keys) the next one is already being asked for."""
        end = prefix_end(prefix)
        fetch: asyncio.Future | None = asyncio.ensure_future(self._range(prefix, end, revision, page, timeout=60))
        try:
            while fetch is not None:
                answer = await fetch
                revision = revision or int(answer["header"]["revision"])
                raw = answer.get("kvs", [])
                fetch = None
                if answer.get("more") and raw:
                    fetch = asyncio.ensure_future(self._range(unb64(raw[-1]["key"]) + b"\0", end, revision, page,
                                                              timeout=60))
                yield revision, await asyncio.to_thread(_decode, raw)
        finally:
            if fetch is not None:
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        return int((await self.call("/v3/kv/put", put_op(key, value, lease)["request_put"]))["header"]["revision"])

    async def delete(self, key: bytes, range_end: bytes | None = None) -> int:
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        return int((await self.call("/v3/kv/deleterange", body))["header"]["revision"])

    async def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                  failure: list[dict[str, Any]] | None = None, *, timeout: float | None = None) -> TxnResult:
        answer = await self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []},
                                 timeout=timeout)
        return TxnResult(bool(answer.get("succeeded")), int(answer["header"]["revision"]),
                         answer.get("responses", []))

    async def compact(self, revision: int) -> None:
        await self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    # -- watch -------------------------------------------------------------------------
    async def watch(self, key: bytes, range_end: bytes | None, start_revision: int, *,
                    progress_notify: bool = True, endpoint: str | None = None) -> AsyncIterator[WatchResponse]:
        """Changes to [key, range_end) from `start_revision` on, in revision order, as
        etcd sends them, from `endpoint` (default: the preferred one). Ends with
        EtcdCompacted when that revision is gone, and with EtcdUnavailable when the
        stream breaks, after which that endpoint is tried last; it never skips: the
        caller reads again."""
        endpoint = endpoint or self.endpoint
        create: dict[str, Any] = {"key": b64(key), "start_revision": str(start_revision),
                                  "progress_notify": progress_notify, "prev_kv": False}
        if range_end is not None:
            create["range_end"] = b64(range_end)
        if self._user and self._token is None:
            await self.authenticate()
        session = self._open()
        try:
            async with session.post(endpoint + "/v3/watch", data=orjson.dumps({"create_request": create}),
                                    headers=self._headers(),
                                    timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout)) as resp:
                if resp.status != 200:
                    raise from_answer(_json_or_empty(await resp.read()), resp.status)
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    if len(buf) > MAX_LINE:
                        raise EtcdError("a watch response is over the size limit")
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _watch_response(orjson.loads(line))
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            self.demote(endpoint)          # the next watch tries another
            raise EtcdUnavailable(f"watch on {endpoint}: {exc.__class__.__name__}: {exc}") from None
        self.demote(endpoint)
        raise EtcdUnavailable("the watch stream ended")

    # -- leases ------------------------------------------------------------------------
    async def grant(self, ttl: int) -> tuple[int, int]:
        answer = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(answer["ID"]), int(answer["TTL"])

    async def keepalive(self, lease: int) -> int:
        """Refresh `lease`; its TTL in seconds. EtcdLeaseLost when it is gone."""
        answer = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        ttl = int(answer.get("result", answer).get("TTL", 0))
        if ttl <= 0:
            raise EtcdLeaseLost(f"lease {lease:x} expired or was revoked")
        return ttl

    async def revoke(self, lease: int) -> None:
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdLeaseLost:
            pass

    async def status(self) -> dict[str, Any]:
        return await self.call("/v3/maintenance/status", {})


def _decode(raw) -> list[KeyValue]:
    return [KeyValue.of(kv) for kv in raw]


def _json_or_empty(data: bytes) -> dict[str, Any]:
    try:
        return orjson.loads(data or b"{}")
    except orjson.JSONDecodeError:
        return {"message": data.decode("utf-8", "replace")[:200]}


def _watch_response(obj: dict[str, Any]) -> WatchResponse:
    if "error" in obj:
        raise from_answer(obj["error"] if isinstance(obj["error"], dict) else obj, 200)
    result = obj.get("result", {})
    if result.get("canceled"):
        compacted = int(result.get("compact_revision", 0))
        if compacted:
            raise EtcdCompacted(f"the watch's start revision is compacted (compacted up to {compacted})", compacted)
        raise EtcdUnavailable(f"etcd cancelled the watch: {result.get('cancel_reason') or 'no reason given'}")
    events = [Event(e.get("type") == "DELETE", KeyValue.of(e.get("kv", {}))) for e in result.get("events", ())]
    return WatchResponse(int(result.get("header", {}).get("revision", 0)), events, bool(result.get("created")))
