"""One test per class of config error: the exact field path, and a message naming the problem.

Schema errors (pydantic) and cross-field errors (router.config.validate) are reported in
one list; a config is never half-accepted.
"""

import json

import pytest

from router.config import ConfigError
from tests.config.support import BASE, config_errors, error_at, load_toml


def with_stamp_keys(index: int, lines: str, text: str = BASE) -> str:
    """BASE with extra keys in the index-th [[stamps]] table."""
    parts = text.split("[[stamps]]")
    parts[index + 1] = parts[index + 1].rstrip("\n") + "\n" + lines + "\n"
    return "[[stamps]]".join(parts)


def with_routing(lines: str, text: str = BASE) -> str:
    return text.replace("[routing]\n", "[routing]\n" + lines + "\n", 1)


def test_base_config_is_valid():
    valid = load_toml(BASE)
    assert [s.name for s in valid.config.stamps] == ["eu-1", "eu-2", "us-1"]


def test_duplicate_stamp_names():
    text = BASE + '[[stamps]]\nname = "eu-2"\nregion = "eu"\nbackends = ["10.9.0.1:80"]\n'
    message = error_at(text, "stamps[3].name")
    assert "duplicate stamp name 'eu-2'" in message
    assert "stamps[1]" in message


def test_pin_to_unknown_stamp_in_tenants():
    message = error_at(BASE + '[tenants]\nacme = "eu-9"\n', "tenants.acme")
    assert message == "unknown stamp 'eu-9'"


def test_pin_to_unknown_stamp_in_tenants_file(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"acme": "eu-1", "globex": {"stamp": "ap-1"}}))
    text = 'tenants_file = "pins.json"\n' + BASE
    message = error_at(text, "tenants_file.globex", base_dir=str(tmp_path))
    assert message == "unknown stamp 'ap-1'"


def test_failover_to_unknown_stamp():
    message = error_at(with_stamp_keys(0, 'failover = ["eu-3"]'), "stamps[0].failover[0]")
    assert message == "unknown stamp 'eu-3'"


def test_failover_across_residency_is_refused():
    text = with_stamp_keys(0, 'failover = ["eu-2", "us-1"]')
    message = error_at(text, "stamps[0].failover[1]")
    assert "'us-1' is in residency 'us', not 'eu'" in message
    assert "allow_cross_residency_failover" in message


def test_failover_across_explicit_residency_is_refused():
    # Same region name, different residency: residency is what the rule keeps.
    text = with_stamp_keys(1, 'residency = "eu-sovereign"', with_stamp_keys(0, 'failover = ["eu-2"]'))
    message = error_at(text, "stamps[0].failover[0]")
    assert "residency 'eu-sovereign', not 'eu'" in message


def test_failover_across_residency_allowed_when_asked():
    text = with_stamp_keys(0, 'failover = ["us-1"]\nallow_cross_residency_failover = true')
    valid = load_toml(text)
    assert valid.config.stamps[0].failover == ["us-1"]


def test_failover_to_itself():
    message = error_at(with_stamp_keys(2, 'failover = ["us-1"]'), "stamps[2].failover[0]")
    assert message == "stamp 'us-1' cannot fail over to itself"


def test_anonymous_default_stamp_unknown():
    message = error_at(with_routing('anonymous = "stamp:ap-1"'), "routing.anonymous")
    assert message == "unknown stamp 'ap-1'"


def test_anonymous_value_not_one_of_the_forms():
    message = error_at(with_routing('anonymous = "nearest"'), "routing.anonymous")
    assert "geo|reject|stamp:" in message


@pytest.mark.parametrize(("backend", "problem"), [
    ("10.1.0.10:0", "port must be 1 to 65535"),
    ("10.1.0.10:70000", "port must be 1 to 65535"),
    ("10.1.0.10:", "port must be 1 to 65535"),
    ("app:http", "port must be 1 to 65535"),
    ("10.1.0.10", "is not \"host:port\""),
    ("app.internal", "is not \"host:port\""),
    (":8080", "is not \"host:port\""),
    ("::1:8080", "write an IPv6 address as \"[addr]:port\""),
    ("[::1]", "is not \"[ipv6]:port\""),
    ("[::1:8080", "is not \"[ipv6]:port\""),
    ("[fe80::zz]:8080", "'fe80::zz' is not an IPv6 address"),
    ("[10.1.0.10]:8080", "'10.1.0.10' is not an IPv6 address"),
    ("300.1.0.10:8080", "'300.1.0.10' is neither an IPv4 address nor a host name"),
    ("10.1:8080", "'10.1' is neither an IPv4 address nor a host name"),
    ("under_score:8080", "'under_score' is not a valid host name"),
    ("-app:8080", "'-app' is not a valid host name"),
])
def test_backend_not_host_port(backend, problem):
    text = BASE.replace('"10.1.1.10:8080"', f'"10.1.1.11:8080", {json.dumps(backend)}')
    message = error_at(text, "stamps[1].backends[1]")
    assert problem in message
    assert repr(backend) in message


@pytest.mark.parametrize("backend", ["10.1.0.10:1", "app.internal:65535", "[::1]:8080",
                                     "[fe80::1%eth0]:8080", "localhost:80", "app.svc.cluster.local.:80"])
def test_backend_forms_accepted(backend):
    text = BASE.replace('"10.1.1.10:8080"', json.dumps(backend))
    assert load_toml(text).config.stamps[1].backends == [backend]


def test_listen_address_checked_like_backends():
    message = error_at(BASE + '[listen]\nhttp = "0.0.0.0:99999"\n', "listen.http")
    assert "port must be 1 to 65535" in message


def test_geo_region_without_any_stamp():
    text = BASE + '[geo]\ndefault_region = "eu"\nregions = { eu = ["DE"], ap = ["JP", "SG"] }\n'
    message = error_at(text, "geo.regions.ap")
    assert message == "no stamp is in region 'ap'"


def test_geo_default_region_without_any_stamp():
    message = error_at(BASE + '[geo]\ndefault_region = "ap"\n', "geo.default_region")
    assert message == "no stamp is in region 'ap'"


def test_geo_anonymous_needs_default_region():
    message = error_at(with_routing('anonymous = "geo"'), "geo.default_region")
    assert "required when routing.anonymous = \"geo\"" in message


def test_geo_country_codes_checked():
    text = BASE + '[geo]\ndefault_region = "us"\nregions = { eu = ["DE", "fr"], us = ["US", "DE"] }\n'
    errors = dict(config_errors(text))
    assert "'fr' is not an ISO 3166 country code" in errors["geo.regions.eu[1]"]
    assert errors["geo.regions.us[1]"] == "country DE is already in region 'eu'"


def test_jwt_source_without_jwt_section():
    message = error_at(with_routing('sources = ["jwt", "header"]').replace("sources = [\"subdomain\", \"header\"]\n", ""), "jwt")
    assert "no [jwt] section" in message


def test_jwt_source_without_key_source():
    text = with_routing('sources = ["jwt", "header"]').replace("sources = [\"subdomain\", \"header\"]\n", "")
    message = error_at(text + '[jwt]\nclaim = "tid"\nissuer = "https://id.example.com/"\n', "jwt")
    assert "none of jwks_url, jwks_file, secret_file" in message


def test_tenants_file_merged_with_tenants(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({
        "initech": "us-1",
        "acme": "eu-1",                                       # the same pin twice is fine
        "umbrella": {"stamp": "eu-2", "mode": "read-only"},
    }))
    text = 'tenants_file = "pins.json"\n' + BASE + '[tenants]\nacme = "eu-1"\nglobex = "eu-2"\n'
    valid = load_toml(text, base_dir=str(tmp_path))
    assert dict(valid.pins) == {"acme": "eu-1", "globex": "eu-2", "initech": "us-1", "umbrella": "eu-2"}
    assert dict(valid.modes) == {"umbrella": "read-only"}


def test_tenants_file_conflicting_pin_refused(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"acme": "eu-2", "globex": "us-1"}))
    text = 'tenants_file = "pins.json"\n' + BASE + '[tenants]\nacme = "eu-1"\n'
    message = error_at(text, "tenants_file.acme", base_dir=str(tmp_path))
    assert message == "conflicts with the pin in [tenants] (stamp 'eu-1')"


def test_tenants_file_conflicting_mode_refused(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"acme": {"stamp": "eu-1", "mode": "read-only"}}))
    text = 'tenants_file = "pins.json"\n' + BASE + '[tenants]\nacme = "eu-1"\n'
    message = error_at(text, "tenants_file.acme", base_dir=str(tmp_path))
    assert "conflicts with the pin in [tenants]" in message


def test_tenants_file_missing_or_not_json(tmp_path):
    assert "cannot read" in error_at('tenants_file = "nope.json"\n' + BASE, "tenants_file", base_dir=str(tmp_path))
    (tmp_path / "pins.json").write_text("{acme: eu-1}")
    assert "is not valid JSON" in error_at('tenants_file = "pins.json"\n' + BASE, "tenants_file", base_dir=str(tmp_path))
    (tmp_path / "pins.json").write_text('["acme"]')
    assert "must be a table" in error_at('tenants_file = "pins.json"\n' + BASE, "tenants_file", base_dir=str(tmp_path))


@pytest.mark.parametrize(("tenant", "path"), [
    ("bad id", "tenants['bad id']"),
    ("x" * 129, "tenants." + "x" * 129),
    ("ümlaut", "tenants['ümlaut']"),
    ("a/b", "tenants['a/b']"),
    ("", "tenants['']"),
])
def test_invalid_tenant_id_in_pins(tenant, path):
    text = BASE + f'[tenants]\nacme = "eu-1"\n{json.dumps(tenant)} = "eu-1"\n'
    assert error_at(text, path) == "invalid tenant id: 1 to 128 of A-Z a-z 0-9 . _ -"


def test_invalid_tenant_id_in_tenants_file(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"ok": "eu-1", "no\nway": "eu-1"}))
    message = error_at('tenants_file = "pins.json"\n' + BASE, "tenants_file['no\\nway']", base_dir=str(tmp_path))
    assert message.startswith("invalid tenant id")


def test_malformed_pin():
    text = BASE + '[tenants]\nacme = { stamp = "eu-1", mode = "rw" }\nglobex = 3\n'
    errors = dict(config_errors(text))
    assert "read-write" in errors["tenants.acme"] and "read-only" in errors["tenants.acme"]
    assert errors["tenants.globex"].startswith("a pin is a stamp name")


def test_many_bad_pins_are_summed_up(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({f"t{i}": "gone" for i in range(60)}))
    errors = config_errors('tenants_file = "pins.json"\n' + BASE, base_dir=str(tmp_path))
    assert len(errors) == 51
    assert errors[-1] == ("tenants_file", "... and 10 more pins to unknown stamps")


@pytest.mark.parametrize(("text", "path", "hint"), [
    (BASE + '[timeouts]\nconect = "2s"\n', "timeouts.conect", "did you mean 'connect'?"),
    (with_stamp_keys(1, "wieght = 50"), "stamps[1].wieght", "did you mean 'weight'?"),
    (with_stamp_keys(0, 'health = { intervall = "1s" }'), "stamps[0].health.intervall", "did you mean 'interval'?"),
    ("routng = {}\n" + BASE, "routng", "did you mean 'routing'?"),
    (with_routing('tenant_headr = "X-Org"'), "routing.tenant_headr", "did you mean 'tenant_header'?"),
    (BASE + "[outlier]\nzzz = 1\n", "outlier.zzz", None),
])
def test_unknown_key_reported_with_its_path(text, path, hint):
    message = error_at(text, path)
    assert message.startswith("unknown key")
    if hint:
        assert hint in message
    else:
        assert "did you mean" not in message


@pytest.mark.parametrize(("section", "line", "path", "problem"), [
    ("timeouts", 'connect = "2x"', "timeouts.connect", "invalid duration '2x'"),
    ("timeouts", 'idle = "10"', "timeouts.idle", "invalid duration '10'"),
    ("timeouts", "upstream = -1", "timeouts.upstream", "cannot be negative"),
    ("timeouts", "connect = nan", "timeouts.connect", "finite number of seconds, not nan"),
    ("timeouts", "idle = inf", "timeouts.idle", "finite number of seconds, not inf"),
    ("routing", 'retry_after = "soon"', "routing.retry_after", "invalid duration 'soon'"),
    ("jwt", 'leeway = "30 seconds"', "jwt.leeway", "invalid duration '30 seconds'"),
    ("limits", 'max_body_bytes = "100MB!"', "limits.max_body_bytes", "invalid size '100MB!'"),
    ("limits", 'max_header_bytes = "64 kilobytes"', "limits.max_header_bytes", "invalid size '64 kilobytes'"),
    ("limits", "max_header_bytes = -1", "limits.max_header_bytes", "cannot be negative"),
])
def test_bad_durations_and_sizes(section, line, path, problem):
    if section == "routing":
        text = with_routing(line)
    else:
        extra = 'jwks_url = "https://id.example.com/jwks"\n' if section == "jwt" else ""
        text = BASE + f"[{section}]\n{extra}{line}\n"
    assert problem in error_at(text, path)


def test_stamp_health_duration_path():
    message = error_at(with_stamp_keys(2, 'health = { interval = "often" }'), "stamps[2].health.interval")
    assert "invalid duration 'often'" in message


def test_all_errors_reported_at_once(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"initech": "mars-1"}))
    text = with_routing('anonymous = "stamp:nope"\nsoures = []', with_stamp_keys(0, 'failover = ["us-1"]\nweight = -1'))
    text = 'tenants_file = "pins.json"\n' + text + \
        '[timeouts]\nconnect = "soon"\n[tenants]\n"bad id" = "eu-1"\nacme = "eu-7"\n'
    errors = config_errors(text, base_dir=str(tmp_path))
    paths = [p for p, _ in errors]
    assert set(paths) == {
        "routing.soures",            # unknown key (schema)
        "routing.anonymous",         # unknown stamp (cross-field)
        "stamps[0].weight",          # out of range (schema)
        "stamps[0].failover[0]",     # crosses residency (cross-field)
        "timeouts.connect",          # bad duration (schema)
        "tenants['bad id']",         # invalid tenant id (pins)
        "tenants.acme",              # unknown stamp (pins)
        "tenants_file.initech",      # unknown stamp (tenants_file)
    }, errors
    assert len(paths) == len(set(paths)), "no error reported twice"
    # One exception carries them all, and its text has one line per error.
    with pytest.raises(ConfigError) as info:
        load_toml(text, str(tmp_path))
    assert len(str(info.value).splitlines()) == len(errors)


def test_syntax_error_is_one_document_error():
    errors = config_errors(BASE + "[routing\n")
    assert len(errors) == 1 and errors[0][0] == "" and "cannot parse TOML" in errors[0][1]


@pytest.mark.parametrize("domain", ["*.stamps.example.com", ".stamps.example.com", "", " stamps.example.com",
                                    "stamps.example.com:8080", "stamps..example.com"])
def test_routing_domain_not_a_domain_name(domain):
    text = BASE.replace('domains = ["stamps.example.com"]', f'domains = ["ok.example.com", {json.dumps(domain)}]')
    assert error_at(text, "routing.domains[1]") == f"{domain!r} is not a domain name"


def test_subdomain_source_needs_a_domain():
    text = BASE.replace('domains = ["stamps.example.com"]', "")
    assert "no domain is configured" in error_at(text, "routing.domains")


@pytest.mark.parametrize(("line", "path", "problem"), [
    ('trusted_proxies = ["10.0.0.0/8", "10.0.0.7/8"]', "listen.trusted_proxies[1]", "has host bits set"),
    ('trusted_proxies = ["lb.internal"]', "listen.trusted_proxies[0]", "is not an IP address or network"),
    ('trusted_proxies = ["10.0.0.0/33"]', "listen.trusted_proxies[0]", "is not an IP address or network"),
    ('forwarded_proto = "wss"', "listen.forwarded_proto", "'http' or 'https'"),
])
def test_bad_forwarding_settings_name_their_entry(line, path, problem):
    assert problem in error_at(BASE + f"[listen]\n{line}\n", path)


@pytest.mark.parametrize(("line", "problem"), [
    ("tenant_rate = inf", "finite number"),
    ("tenant_rate = -1", "must be at least 0, not -1"),
    ("tenant_burst = 0", "must be at least 1, not 0"),
])
def test_bad_tenant_limits_name_their_field(line, problem):
    key = line.split(" ", 1)[0]
    assert problem in error_at(BASE + f"[limits]\n{line}\n", f"limits.{key}")
