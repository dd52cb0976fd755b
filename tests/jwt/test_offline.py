"""`stamp-router route -c CONFIG --token JWT`: the decision, explained, without a server."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from router.cli import main
from tests.jwt.jwks_server import JwksServer
from tests.jwt.support import jwks, jwt_config_text, public_jwk, rsa_key, token


def live_token(private=None, **over) -> str:
    """A token valid now: the command reads the real clock."""
    now = time.time()
    return token(private, exp=now + 600, nbf=now - 10, iat=now, **over)


def route(capsys, config_path, tok: str) -> tuple[int, dict]:
    code = main(["route", "-c", str(config_path), "--token", tok])
    return code, orjson.loads(capsys.readouterr().out)


@pytest.fixture
def config_path(tmp_path):
    (tmp_path / "jwks.json").write_bytes(jwks(public_jwk(rsa_key("k1"), "k1")))
    path = tmp_path / "router.toml"
    path.write_text(jwt_config_text('jwks_file = "jwks.json"\nclaim = "org.id"'))
    return path


def test_a_valid_token_is_explained_with_its_key_and_claim(capsys, config_path):
    code, out = route(capsys, config_path, live_token(tid=..., org={"id": "acme"}))
    assert code == 0 and out["tenant"] == "acme" and out["source"] == "jwt"
    text = "\n".join(out["considered"])
    assert "keys from jwks_file" in text and "jwks.json" in text
    assert "signature (RS256) verified with kid 'k1'" in text
    assert "claim 'org.id' = 'acme'" in text


@pytest.mark.parametrize(("over", "reason"), [
    ({"org": {"id": "acme"}, "exp": 1_000_000}, "expired"),
    ({"org": {"id": "no spaces please"}}, "not a valid tenant id"),
    ({"org": {"id": "acme"}, "aud": "web"}, "audience 'web' is not accepted"),
])
def test_a_refused_token_says_why(capsys, config_path, over, reason):
    tok = token(tid=..., **{"exp": time.time() + 600, **over})
    code, out = route(capsys, config_path, tok)
    assert code == 2 and out["status"] == 401 and out["error"] == "invalid_token"
    assert reason in out["message"] and reason in out["considered"][-1]


def test_an_unknown_kid_lists_the_kids_held(capsys, config_path):
    code, out = route(capsys, config_path, live_token(rsa_key("k2"), kid="k2", org={"id": "acme"}))
    assert code == 2 and "unknown key id 'k2'" in out["message"]
    assert "jwt: key ids held: 'k1'" in out["considered"]


def test_keys_from_a_jwks_url(capsys, tmp_path):
    async def scenario():
        server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
        path = tmp_path / "router.toml"
        path.write_text(jwt_config_text(f'jwks_url = "{server.url}"'))
        try:
            return await asyncio.to_thread(main, ["route", "-c", str(path), "--token", live_token()]), server.url
        finally:
            await server.stop()

    code, url = asyncio.run(scenario())
    out = orjson.loads(capsys.readouterr().out)
    assert code == 0 and out["tenant"] == "acme"
    assert f"keys from jwks_url {url}" in out["considered"][0]


def test_keys_that_cannot_be_had_end_the_command_with_a_message(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(jwt_config_text('jwks_url = "http://127.0.0.1:9/jwks.json"'))
    with pytest.raises(SystemExit) as info:
        main(["route", "-c", str(path), "--token", live_token()])
    assert "jwt.jwks_url: cannot fetch http://127.0.0.1:9/jwks.json" in str(info.value.code)


def test_a_token_where_jwt_is_not_a_source_is_noted(capsys, tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(jwt_config_text('jwks_file = "j.json"', routing='[routing]\nsources = ["header"]\n'))
    code = main(["route", "-c", str(path), "--token", live_token()])
    assert code != 0
    assert "plays no part in routing" in capsys.readouterr().err


def test_routing_by_tenant_does_not_need_the_identity_provider(capsys, tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(jwt_config_text('jwks_url = "http://127.0.0.1:9/jwks.json"'))
    assert main(["route", "-c", str(path), "--tenant", "acme"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["tenant"] == "acme" and out["considered"][0] == "jwt: no Authorization header"
