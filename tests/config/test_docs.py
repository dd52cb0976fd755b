"""docs/config.md documents every key of the schema, in its section."""

import pathlib
import re

import pytest

from router.config import schema

DOC = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
SECTIONS = dict(re.findall(r"^#{2,3} ([^\n]+)\n(.*?)(?=^#{2,3} |\Z)", DOC, re.S | re.M))

WHERE = {
    schema.Listen: "`[listen]`", schema.Admin: "`[admin]`", schema.Routing: "`[routing]`",
    schema.Jwt: "`[jwt]`", schema.Geo: "`[geo]`", schema.Timeouts: "`[timeouts]`",
    schema.Limits: "`[limits]`", schema.Upstream: "`[upstream]`", schema.Outlier: "`[outlier]`",
    schema.Retry: "`[retry]`", schema.Placement: "`[placement]`", schema.Control: "`[control]`", schema.Process: "`[process]`", schema.Stamp: "`[[stamps]]`",
    schema.HealthCheck: "`stamps[].health`", schema.Pin: "Pins: `[tenants]` and `tenants_file`",
    schema.Etcd: "`[control.etcd]`",
}
TOP_LEVEL = {"version", "tenants_file"}      # the other top-level keys are sections


@pytest.mark.parametrize("model", list(WHERE), ids=lambda m: m.__name__)
def test_every_key_is_documented_in_its_section(model):
    text = SECTIONS[WHERE[model]]
    missing = [name for name in model.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/config.md, section {WHERE[model]}, does not document {missing}"


def test_top_level_keys_are_documented():
    assert set(schema.Config.model_fields) - TOP_LEVEL == {
        "listen", "admin", "routing", "jwt", "geo", "timeouts", "limits", "upstream", "outlier",
        "retry", "placement", "control", "process", "stamps", "tenants"}, "a new section needs its own part of docs/config.md"
    for name in TOP_LEVEL:
        assert f"`{name}`" in SECTIONS["Top level"], name
