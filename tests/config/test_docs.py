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
    schema.HealthCheck: "`stamps[].health`", schema.StampTls: "`stamps[].tls`", schema.Certificate: "`[listen]`", schema.Pin: "Pins: `[tenants]` and `tenants_file`",
    schema.Etcd: "`[control.etcd]`", schema.Migration: "`[migration]`",
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
        "retry", "placement", "control", "process", "migration", "stamps", "tenants"}, "a new section needs its own part of docs/config.md"
    for name in TOP_LEVEL:
        assert f"`{name}`" in SECTIONS["Top level"], name


REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_admin_api_contents_list_every_endpoint():
    text = (REPO / "docs" / "admin-api.md").read_text()
    headings = re.findall(r"^## ((?:GET|PUT|POST|PATCH|DELETE) \S+)$", text, re.M)
    contents = re.findall(r"^- \[([^\]]+)\]\(#", text, re.M)
    assert headings and [h for h in headings if h not in contents] == []


def test_the_admin_token_row_names_every_kind_of_write():
    row = next(line for line in SECTIONS["`[admin]`"].splitlines() if line.startswith("| `token_file`"))
    for endpoint in ("PUT /config", "POST /config/reload", "/tenants/{id}", "PATCH /tenants"):
        assert endpoint in row, endpoint


def test_state_dir_says_what_it_is_relative_to():
    row = next(line for line in SECTIONS["`[control]`"].splitlines() if line.startswith("| `state_dir`"))
    assert "relative to the config file's directory" in row


def test_nothing_in_the_repository_cites_the_design_document():
    import subprocess
    cited = "design" + ".md"      # spelled apart, so that this file does not cite it
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    citing = [f for f in files if (REPO / f).is_file() and cited in (REPO / f).read_text(errors="ignore")]
    assert citing == []
