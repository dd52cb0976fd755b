"""A validated config as a message: how a worker gets a small table without a new fork.

The supervisor validated the config; this is its typed copy, not a second validation:
the model is rebuilt from its own dump (pydantic checks the shape again, about a
millisecond for a config of a few stamps; the cross-field and pin checks do not run
again), and the pins travel as they are. The raw document stays in the supervisor, which alone persists it.

Tables of SHARE_BY_FORK pins or more never travel: a new generation of workers forked
from the supervisor shares them page for page instead.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.serialization import (Encoding, PublicFormat,
                                                          load_pem_public_key)

from router.config import ValidConfig
from router.config.schema import Config
from router.core.jwt_keys import Key, KeySet

# From this many pins a full change forks a new generation instead of sending the table
# (router.core.pin_table.LAYER_MIN is the same line for pin edits: below it, copies are cheap).
SHARE_BY_FORK = 50_000


def dump(valid: ValidConfig) -> dict[str, Any]:
    return {"config": valid.config.model_dump(mode="json"), "pins": dict(valid.pins), "modes": dict(valid.modes),
            "digest": valid.digest, "source": valid.source, "base_dir": valid.base_dir}


def load(data: dict[str, Any]) -> ValidConfig:
    return ValidConfig(config=Config.model_validate(data["config"]), pins=data["pins"], modes=data["modes"],
                       digest=data["digest"], source=data["source"], document={}, base_dir=data["base_dir"])


def dump_keys(keys: KeySet) -> dict[str, Any]:
    """A key set fetched by the supervisor, for its workers (public keys as PEM)."""
    out = []
    for k in keys.keys:
        material = k.key if k.kty == "oct" else k.key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        out.append({"kid": k.kid, "kty": k.kty, "algorithms": sorted(k.algorithms), "thumbprint": k.thumbprint,
                    "ident": k.ident, "detail": k.detail, "material": base64.b64encode(material).decode()})
    return {"keys": out, "origin": keys.origin, "skipped": list(keys.skipped)}


def load_keys(data: dict[str, Any]) -> KeySet:
    keys = []
    for k in data["keys"]:
        material = base64.b64decode(k["material"])
        keys.append(Key(kid=k["kid"], kty=k["kty"], algorithms=frozenset(k["algorithms"]),
                        key=material if k["kty"] == "oct" else load_pem_public_key(material),
                        thumbprint=k["thumbprint"], ident=k["ident"], detail=k["detail"]))
    return KeySet(tuple(keys), data["origin"], tuple(data["skipped"]))
