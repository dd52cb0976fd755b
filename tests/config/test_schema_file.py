"""config/schema.json is generated from the schema; it must not drift from it."""

import json
import pathlib

from router.config import json_schema

SCHEMA_FILE = pathlib.Path(__file__).resolve().parents[2] / "config" / "schema.json"


def test_committed_schema_is_current():
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == json_schema(), "config/schema.json is stale: run `make schema` and commit it"


def test_schema_covers_every_section():
    props = json_schema()["properties"]
    for section in ("listen", "admin", "routing", "jwt", "geo", "timeouts", "limits", "upstream",
                    "outlier", "retry", "control", "stamps", "tenants", "tenants_file"):
        assert section in props, section
    assert json_schema()["required"] == ["stamps"]


def test_schema_has_no_dangling_references():
    text = json.dumps(json_schema())
    defs = json_schema().get("$defs", {})
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}:
        assert ref in defs, ref
