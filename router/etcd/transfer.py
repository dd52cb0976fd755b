"""`stamp-router etcd import FILE` and `export`: a config and its pins into and out of etcd.

Import is plan, then apply (style.md point 7). The plan is the difference between the
file (validated in full first, as `stamp-router check` does) and what etcd holds under
the prefix, read at one revision: the config key if its content changes, a put per pin
added or changed, a delete per pin gone. Only the difference is written, so importing the
same file twice writes nothing, and routers see only real changes.

Writes go in transactions within etcd's limits: at most `max_ops` operations each
(etcd's --max-txn-ops, 128 by default) and `max_bytes` of request (under etcd's
--max-request-bytes, 1.5 MiB by default). Order: a config that adds stamps goes first
(its new pins need the stamps), one that removes stamps goes last (after the pins that
named them moved); deletes after puts. Routers follow every transaction; a config
document written mid-import and a pin naming a stamp not yet there are refused by them
until the import is complete, and then read whole (docs/control-plane.md, "etcd").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson

from router.config import ValidConfig, format_of, parse_document
from router.control.candidate import PROCESS_SECTIONS
from router.control.etcd_source import compose
from router.etcd.limits import MAX_TXN_BYTES, MAX_TXN_OPS
from router.etcd.client import EtcdClient, KeyValue, delete_op, put_op
from router.etcd.layout import Layout

# Transactions in flight at once: pins are independent keys, so their order does not matter.
PARALLEL = 4
# Keys not copied into the config document: pins live in their own keys, and the local
# sections stay with each router.
NOT_IN_DOCUMENT = ("tenants", "tenants_file", *PROCESS_SECTIONS)


def config_document(path: str, data: bytes) -> bytes:
    """The config file's document as stored in PREFIX/config: JSON, without pins and local sections."""
    doc = parse_document(data, format_of(path))
    return orjson.dumps({k: v for k, v in doc.items() if k not in NOT_IN_DOCUMENT})


def pin_values(valid: ValidConfig) -> Iterator[tuple[str, bytes]]:
    """Each pin as its etcd value: "STAMP", or {"stamp", "mode"} for a non-default mode."""
    modes = valid.modes
    for tenant, stamp in valid.pins.items():
        mode = modes.get(tenant)
        yield tenant, orjson.dumps({"stamp": stamp, "mode": mode} if mode else stamp)


@dataclass
class ImportPlan:
    revision: int                             # of the etcd content it was planned against
    config: bytes | None                      # the new PREFIX/config, or None: unchanged
    config_first: bool                        # the config adds stamps only: write it first
    puts: list[tuple[bytes, bytes]] = field(default_factory=list)
    deletes: list[bytes] = field(default_factory=list)
    unchanged: int = 0
    layout_config: bytes = b""                # the config's key

    def batches(self, max_ops: int = MAX_TXN_OPS, max_bytes: int = MAX_TXN_BYTES) -> list[list[dict[str, Any]]]:
        """The transactions, in the order they are written."""
        out: list[list[dict[str, Any]]] = []

        def fill(ops: Iterator[tuple[int, dict[str, Any]]]) -> None:
            batch: list[dict[str, Any]] = []
            size = 0
            for cost, op in ops:
                if batch and (len(batch) >= max_ops or size + cost > max_bytes):
                    out.append(batch)
                    batch, size = [], 0
                batch.append(op)
                size += cost
            if batch:
                out.append(batch)

        config = [put_op(self.layout_config, self.config)] if self.config is not None else []
        if self.config_first and config:
            out.append(config)
        fill((len(k) + len(v), put_op(k, v)) for k, v in self.puts)
        fill((len(k), delete_op(k)) for k in self.deletes)
        if not self.config_first and config:
            out.append(config)
        return out

    def summary(self) -> dict[str, Any]:
        return {"revision": self.revision, "config": "changed" if self.config is not None else "unchanged",
                "pins_put": len(self.puts), "pins_deleted": len(self.deletes), "pins_unchanged": self.unchanged}


def plan_import(layout: Layout, document: bytes, valid: ValidConfig, current: list[KeyValue],
                revision: int) -> ImportPlan:
    """What to write so that etcd holds `document` and the pins of `valid`. Pure."""
    held_config: bytes | None = None
    held: dict[bytes, bytes] = {}
    for kv in current:
        if kv.key == layout.config_key:
            held_config = kv.value
        elif kv.key.startswith(layout.tenants):
            held[kv.key] = kv.value
    old_stamps = _stamps(held_config)
    new_stamps = {s.name for s in valid.config.stamps}
    plan = ImportPlan(revision, None if held_config == document else document,
                      config_first=old_stamps <= new_stamps, layout_config=layout.config_key)
    for tenant, value in pin_values(valid):
        key = layout.tenant_key(tenant)
        before = held.pop(key, None)
        if before is None or orjson.loads(before) != orjson.loads(value):
            plan.puts.append((key, value))
        else:
            plan.unchanged += 1
    plan.deletes = sorted(held)
    return plan


def _stamps(config: bytes | None) -> set[str]:
    try:
        doc = orjson.loads(config) if config is not None else {}
    except orjson.JSONDecodeError:
        return set()       # a TOML document, or a broken one: treat as removing stamps
    return {s.get("name") for s in doc.get("stamps", ()) if isinstance(s, dict)}


async def read_prefix(client: EtcdClient, layout: Layout) -> tuple[int, list[KeyValue]]:
    """Every key under the prefix, at one revision."""
    kvs: list[KeyValue] = []
    revision = 0
    async for revision, page in client.range_pages(layout.root):
        kvs.extend(page)
    return revision, kvs


async def apply_import(client: EtcdClient, plan: ImportPlan, *, max_ops: int = MAX_TXN_OPS,
                       max_bytes: int = MAX_TXN_BYTES, progress=None) -> int:
    """Write the plan; the number of transactions. A config written last waits for
    every pin before it; pins go `PARALLEL` transactions at a time."""
    batches = plan.batches(max_ops, max_bytes)
    first = [batches.pop(0)] if plan.config is not None and plan.config_first else []
    last = [batches.pop()] if plan.config is not None and not plan.config_first else []
    for batch in first:
        await client.txn([], batch)
    gate = asyncio.Semaphore(PARALLEL)
    done = 0

    async def write(batch: list[dict[str, Any]]) -> None:
        nonlocal done
        async with gate:
            await client.txn([], batch, timeout=max(client.timeout, 30.0))
        done += 1
        if progress is not None and done % 500 == 0:
            progress(done, len(batches))

    await asyncio.gather(*(write(b) for b in batches))
    for batch in last:
        await client.txn([], batch)
    return len(first) + len(batches) + len(last)


async def export(client: EtcdClient, layout: Layout) -> tuple[int, bytes]:
    """etcd's content at one revision as one JSON config document (tenants inline).
    ValueError with the errors when it cannot make one."""
    revision, kvs = await read_prefix(client, layout)
    config = next((kv.value for kv in kvs if kv.key == layout.config_key), None)
    pins = [kv for kv in kvs if kv.key.startswith(layout.tenants)]
    data, errors = compose(layout, config, pins)
    if data is None:
        raise ValueError("; ".join(f"{p}: {m}" for p, m in errors))
    return revision, data
