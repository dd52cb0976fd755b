"""Amazon Route 53 through boto3 (the `route53` extra), with weighted record sets.

An A or AAAA key becomes one weighted set per stamp: SetIdentifier = the stamp's name,
Weight = the stamp's weight. SRV keys are plain sets carrying the weights themselves.

Each plan is one ChangeBatch, which Route 53 applies atomically: CREATE for a new plain
set (the ownership record among them), DELETE with the exact old content for a set that
goes, UPSERT for a weighted set that is new or changes. Route 53 refuses a CREATE of a
set that exists and a DELETE that does not match, and that InvalidChangeBatch is a
ConflictError; an UPSERT has no such check, so the batch follows a fresh read that
compares the old content of every change (check-then-write). DELETE then CREATE in one
batch would make every write a true compare-and-set, but moto, which the tests run on,
refuses it.

moto, used by the tests, accepts batches Route 53 rejects, so `rules` checks them here:
Weight 0..255, one value per weighted set (one address per stamp and family), at most
100 weighted sets per name and type, no plain set beside weighted ones, SetIdentifier of
1 to 128 characters, TTL 0..2147483647.

boto3 is imported on first use; credentials come from its default chain and are never
logged.
"""

from __future__ import annotations

import asyncio
import re

from router.dns.errors import ConflictError, ProviderError
from router.dns.model import DesiredSet, Key, Record, make_record
from router.dns.plan import Change
from router.dns.providers.base import Provider, diff_sets

MAX_WEIGHT = 255
MAX_WEIGHTED_SETS = 100
MAX_TTL = 2147483647
_OCTAL = re.compile(r"\\(\d{3})")


def route53_problems(key: Key, records: tuple[Record, ...]) -> list[str]:
    """What Route 53 would reject in the new content of one key."""
    name, rtype = key
    where = f"{name} {rtype}"
    problems = []
    weighted = [r for r in records if r.set_id is not None]
    plain = [r for r in records if r.set_id is None]
    if weighted and plain:
        problems.append(f"{where}: a plain set beside weighted sets")
    if len(plain) > 1:
        problems.append(f"{where}: {len(plain)} plain sets for one name and type")
    if len(weighted) > MAX_WEIGHTED_SETS:
        problems.append(f"{where}: {len(weighted)} weighted sets, Route 53 allows {MAX_WEIGHTED_SETS}")
    ids = [r.set_id for r in weighted]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{where}: SetIdentifier {dup!r} twice")
    for r in weighted:
        if not 1 <= len(r.set_id) <= 128:
            problems.append(f"{where}: SetIdentifier {r.set_id!r} must be 1 to 128 characters")
        if r.weight is None or not 0 <= r.weight <= MAX_WEIGHT:
            problems.append(f"{where}: stamp {r.set_id} has weight {r.weight}; Route 53 weights are "
                            f"0..{MAX_WEIGHT}: give the stamps weights in that range")
        if len(r.values) != 1:
            problems.append(f"{where}: stamp {r.set_id} has {len(r.values)} addresses; a weighted set "
                            f"holds one value here: give the stamp one public address per family")
    for r in records:
        if not 0 <= r.ttl <= MAX_TTL:
            problems.append(f"{where}: TTL {r.ttl} is outside 0..{MAX_TTL}")
        if not r.values:
            problems.append(f"{where}: a set without values")
    return problems


def _unescape(name: str) -> str:
    # Route 53 returns some characters of names as \\ooo octal escapes (\\052 for *).
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), name)


class Route53Provider(Provider):
    kind = "route53"
    WEIGHTED_ADDRESSES = True

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.zone_id = cfg.hosted_zone_id.rsplit("/", 1)[-1]
        self._client = None
        self._zone_checked = False

    def describe(self) -> str:
        return f"route53 hosted zone {self.zone_id} ({self.zone})"

    def render(self, desired: DesiredSet) -> tuple[Record, ...]:
        if desired.type not in ("A", "AAAA"):
            return super().render(desired)
        by_stamp: dict[str, list] = {}
        for m in desired.members:
            by_stamp.setdefault(m.stamp, []).append(m)
        return tuple(make_record(desired.name, desired.type, desired.ttl, [m.value for m in ms],
                                 set_id=stamp, weight=sum(m.weight for m in ms))
                     for stamp, ms in sorted(by_stamp.items()))

    def rules(self, key: Key, records: tuple[Record, ...]) -> list[str]:
        return route53_problems(key, records)

    def _boto(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise ProviderError("the route53 provider needs boto3: pip install 'stamp-router[route53]'") from None
            config = Config(connect_timeout=self.cfg.timeout, read_timeout=self.cfg.timeout,
                            retries={"max_attempts": 3, "mode": "standard"})
            self._client = boto3.client("route53", region_name=self.cfg.region, config=config)
        return self._client

    async def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except NoCredentialsError:
            raise ProviderError(f"{self.describe()}: no AWS credentials (boto3's default chain: "
                                f"environment, shared config, instance role)") from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = err.get("Code", "?"), err.get("Message", "")
            if code == "InvalidChangeBatch" and ("not found" in message or "already exists" in message):
                raise ConflictError(f"{self.describe()}: {what}: the zone changed since it was read: {message}") from None
            raise ProviderError(f"{self.describe()}: {what}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise ProviderError(f"{self.describe()}: {what}: {exc}") from None

    async def _read_records(self) -> list[Record]:
        client = self._boto()
        if not self._zone_checked:
            zone = await self._call("GetHostedZone", client.get_hosted_zone, Id=self.zone_id)
            actual = zone["HostedZone"]["Name"].lower()
            if actual != self.zone:
                raise ProviderError(f"{self.describe()}: the hosted zone is {actual}, not {self.zone}")
            self._zone_checked = True
        out: list[Record] = []
        kwargs: dict = {"HostedZoneId": self.zone_id}
        while True:
            page = await self._call("ListResourceRecordSets", client.list_resource_record_sets, **kwargs)
            for rrset in page["ResourceRecordSets"]:
                out.append(self._record(rrset))
            if not page.get("IsTruncated"):
                return out
            kwargs = {"HostedZoneId": self.zone_id, "StartRecordName": page["NextRecordName"],
                      "StartRecordType": page["NextRecordType"]}
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]

    @staticmethod
    def _record(rrset: dict) -> Record:
        name = _unescape(rrset["Name"])
        if "AliasTarget" in rrset:
            values = [f"alias {rrset['AliasTarget'].get('DNSName', '')}"]
        else:
            values = [v["Value"] for v in rrset.get("ResourceRecords", [])]
        return make_record(name, rrset["Type"], rrset.get("TTL", 0), values,
                           set_id=rrset.get("SetIdentifier"), weight=rrset.get("Weight"))

    @staticmethod
    def _rrset(record: Record) -> dict:
        out = {"Name": record.name, "Type": record.type, "TTL": record.ttl,
               "ResourceRecords": [{"Value": v} for v in record.values]}
        if record.set_id is not None:
            out["SetIdentifier"] = record.set_id
            out["Weight"] = record.weight
        return out

    async def _apply(self, changes: tuple[Change, ...]) -> None:
        await self._assert_unchanged(changes)
        batch = []
        for change in changes:
            for old, new in diff_sets(change):
                if old == new:
                    continue
                if new is None:
                    batch.append({"Action": "DELETE", "ResourceRecordSet": self._rrset(old)})
                else:
                    # moto refuses a CREATE of a weighted set beside another of its name and
                    # type; UPSERT after the check-then-write read is as safe.
                    action = "CREATE" if old is None and new.set_id is None else "UPSERT"
                    batch.append({"Action": action, "ResourceRecordSet": self._rrset(new)})
        client = self._boto()
        await self._call("ChangeResourceRecordSets", client.change_resource_record_sets,
                         HostedZoneId=self.zone_id,
                         ChangeBatch={"Comment": "stamp-router dns sync", "Changes": batch})
