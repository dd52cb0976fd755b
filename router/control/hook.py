"""The migration hook: told that a tenant moves, it answers once its data is in place.

`[migration] hook_url` is POSTed `{"tenant", "from", "to"}`; success is a 2xx with an empty
body or a JSON object whose "ok" is not false. A redirect is never followed (the hook is
named exactly; a redirect would send the tenant's move to wherever it points), and any
other status, or a body that is not JSON, is a failure with what came back in its
message. `hook_command` is run with TENANT, FROM_STAMP and TO_STAMP in its environment;
exit status 0 is success, and its stderr's last line is the failure's message.

The caller bounds the time (the move's deadline): a hook still running then is cancelled
(a command is killed).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import orjson

# What of a failing hook's answer goes in the move's error.
SHOWN_BYTES = 200


class HookFailed(Exception):
    """The hook did not say the data is in place."""


async def run_hook(migration: Any, tenant: str, source: str, target: str) -> str:
    """Run the configured hook; its detail for the move's record. HookFailed if it failed."""
    if migration.hook_url:
        return await _call_url(migration.hook_url, tenant, source, target)
    if migration.hook_command:
        return await _run_command(list(migration.hook_command), tenant, source, target)
    return "no hook configured"


async def _call_url(url: str, tenant: str, source: str, target: str) -> str:
    body = orjson.dumps({"tenant": tenant, "from": source, "to": target})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=body, allow_redirects=False,
                                    headers={"Content-Type": "application/json"}) as resp:
                data = await resp.read()
                if 300 <= resp.status < 400:
                    raise HookFailed(f"{url} redirected ({resp.status}) to {resp.headers.get('Location')!r}; "
                                     "migration.hook_url must name the hook itself (redirects are not followed)")
                if not 200 <= resp.status < 300:
                    raise HookFailed(f"{url} answered {resp.status}: {_shown(data)}")
    except aiohttp.ClientError as exc:
        raise HookFailed(f"{url} could not be called: {exc}") from None
    if not data.strip():
        return f"hook answered {resp.status}"
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise HookFailed(f"{url} answered {resp.status} with a body that is not JSON: {_shown(data)}") from None
    if not isinstance(answer, dict):
        raise HookFailed(f"{url} answered {resp.status} with JSON that is not an object: {_shown(data)}")
    if answer.get("ok") is False:
        raise HookFailed(f"{url} said the data is not in place: {answer.get('error') or _shown(data)}")
    return f"hook answered {resp.status}"


async def _run_command(argv: list[str], tenant: str, source: str, target: str) -> str:
    env = {**os.environ, "TENANT": tenant, "FROM_STAMP": source, "TO_STAMP": target}
    try:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise HookFailed(f"command {argv[0]!r} cannot run: {exc.strerror}") from None
    try:
        _, err = await proc.communicate()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise HookFailed(f"command exited with {proc.returncode}" + (f": {lines[-1][:SHOWN_BYTES]}" if lines else ""))
    return "hook command exited with 0"


def _shown(data: bytes) -> str:
    text = data[:SHOWN_BYTES].decode("utf-8", "replace")
    return repr(text) + (" ..." if len(data) > SHOWN_BYTES else "")
