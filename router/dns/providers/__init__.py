"""DNS providers behind one interface (`base.Provider`): read zone state, apply changes."""

from __future__ import annotations

from router.dns.providers.base import Provider
from router.errors import ConfigError


def make_provider(cfg) -> Provider:
    """The provider for a validated DnsConfig; ConfigError if it cannot serve the records.

    Only the chosen provider's module is imported, so boto3 stays optional.
    """
    kind = cfg.provider.kind
    if kind == "rfc2136":
        from router.dns.providers.rfc2136 import Rfc2136Provider as cls
    elif kind == "powerdns":
        from router.dns.providers.powerdns import PowerDnsProvider as cls
    elif kind == "route53":
        from router.dns.providers.route53 import Route53Provider as cls
    else:  # the config model admits no other kind
        raise ConfigError([("provider.kind", f"unknown provider {kind!r}")])
    provider = cls(cfg.provider)
    errors = [(f"records[{i}].type", f"provider {kind} does not support {e.type} records")
              for i, e in enumerate(cfg.records) if provider.unsupported([e.type])]
    if errors:
        raise ConfigError(errors)
    return provider


__all__ = ["Provider", "make_provider"]
