"""What can go wrong in a DNS sync pass, each with the exit code the CLI answers.

A pass that fails changes nothing it has not already verified; the loop tries again at
the next interval. Messages name the server, zone, key name or file involved and never
carry a secret (TSIG secret, API key).
"""

from __future__ import annotations


class DnsError(Exception):
    """Base: a pass ended without applying its plan."""

    result = "error"          # the metrics label and the pass result


class RegistryError(DnsError):
    """The stamp registry could not be read, or said nothing usable: nothing changes."""

    result = "registry_error"


class ProviderError(DnsError):
    """The DNS server or API refused or failed a read or a write."""

    result = "provider_error"


class ConflictError(ProviderError):
    """A compare-and-set write found the server changed since it was read."""

    result = "conflict"


class VerifyError(ProviderError):
    """A write was accepted, but reading it back shows something else."""

    result = "verify_error"


class PlanInvalid(DnsError):
    """The plan breaks a rule of the provider (Route 53 limits): --force does not help."""

    result = "invalid"


class PlanRefused(DnsError):
    """The plan is over a safety limit; --force applies it anyway."""

    result = "refused"
