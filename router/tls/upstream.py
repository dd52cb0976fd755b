"""TLS to the stamps' backends ([stamps.tls]): one client context per distinct setting.

Contexts are built when a config is prepared (a bad ca_file or client pair refuses the
config with its path) and looked up afterwards by the proxy's pools and the health
probes, so both speak to a backend with the very same settings.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from router.config.addresses import parse_hostport
from router.errors import ConfigError
from router.tls.certs import PairError, load_into, load_pair, read_pem
from router.tls.records import RecordObject

ALPN = ["http/1.1"]


@dataclass(frozen=True, slots=True, eq=False)
class UpstreamTls:
    context: ssl.SSLContext
    server_name: str | None        # None: each backend's own host


def client_context(tls, base_dir: str, path: str, now: float) -> ssl.SSLContext:
    """A verifying client context for one [stamps.tls]; raises ConfigError with `path`."""
    at = lambda p: os.path.join(base_dir, p)   # noqa: E731
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    ctx.sslobject_class = RecordObject      # what uvloop's wrap_bio makes (router.tls.records)
    try:
        if not tls.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif tls.ca_file:
            ctx.load_verify_locations(cadata=read_pem(at(tls.ca_file), "ca_file").decode("ascii", "replace"))
        else:
            ctx.load_default_certs()
        if tls.client_cert_file:
            load_into(ctx, load_pair(at(tls.client_cert_file), at(tls.client_key_file), now))
    except PairError as exc:
        field = {"cert_file": "client_cert_file", "key_file": "client_key_file"}.get(exc.field, exc.field)
        raise ConfigError([(f"{path}.{field}", exc.message)]) from None
    except ssl.SSLError as exc:
        raise ConfigError([(f"{path}.ca_file", f"OpenSSL refused it: {exc.reason or exc}")]) from None
    return ctx


class UpstreamContexts:
    """(stamp tls settings, base_dir) -> UpstreamTls, built by prepare(), read by for_config()."""

    def __init__(self) -> None:
        self._by_key: dict[tuple, UpstreamTls] = {}

    def prepare(self, config, base_dir: str, now: float, fresh: bool = False) -> None:
        """Build what `config` needs; `fresh` rebuilds all (files may have changed).
        Nothing is kept unless every stamp's settings built."""
        built, errors = {}, []
        for i, stamp in enumerate(config.stamps):
            tls = stamp.tls
            if tls is None or not tls.enabled:
                continue
            key = (tls, base_dir)
            if key in built or (not fresh and key in self._by_key):
                continue
            try:
                built[key] = UpstreamTls(client_context(tls, base_dir, f"stamps[{i}].tls", now), tls.server_name)
            except ConfigError as exc:
                errors.extend(exc.errors)
        if errors:
            raise ConfigError(errors)
        self._by_key = {**self._by_key, **built}

    def retain(self, config, base_dir: str) -> None:
        """Forget the contexts no stamp of the config being served uses."""
        keep = {(s.tls, base_dir) for s in config.stamps if s.tls is not None}
        self._by_key = {k: v for k, v in self._by_key.items() if k in keep}

    def for_config(self, config, base_dir: str) -> dict[str, UpstreamTls]:
        """backend address -> its TLS settings, for the backends of stamps with TLS. A
        backend listed by several stamps takes the first one's, as its health probe does."""
        out: dict[str, UpstreamTls] = {}
        for stamp in config.stamps:
            tls = stamp.tls
            if tls is None or not tls.enabled:
                continue
            up = self._by_key.get((tls, base_dir))
            if up is None:
                continue     # not prepared: never happens for a config that was
            for backend in stamp.backends:
                out.setdefault(backend, up)
        return out


def server_name_for(up: UpstreamTls, address: str) -> str:
    return up.server_name or parse_hostport(address)[0]
