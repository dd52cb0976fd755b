"""`stamp-router migrate TENANT --to STAMP --routers URL...`: one move across a fleet.

The same state table as a move on one router (router.core.move), carried out over the
routers' admin APIs with plain pin pushes, which each router answers only once all its
workers serve them and persists like any push:

- pause: `PUT /tenants/{id}` with the strategy's mode on every router;
- drain: `GET /tenants/{id}` on every router until every one reports nothing (or no
  write) of the tenant in flight; a router that does not answer fails the step (with
  --close-tunnels, `DELETE /tenants/{id}/tunnels` first);
- hook: run here, once (--hook-url or --hook-command, as [migration] describes them);
- flip: every router asked first whether it still holds the paused pin (one that does not
  answer fails the move before anything flipped); then the new pin on every router, and
  a router that missed it is asked again until the deadline for finishing;
- rollback: the pin as it was, on every router, retried the same way.

So no router serves the new pin before the hook said the data is there, and every router
is at any moment on the old pin, paused, or on the new pin after the first flip: never
one router writing to the old stamp while another writes to the new. A router that
restarts in the middle starts from its last known good, which holds the paused pin.

Exit status: 0 completed, 1 rolled back (or refused before it began), 2 failed (the
output says which routers hold what).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson

from router.config.schema import Migration
from router.control.hook import HookFailed, run_hook
from router.core.move import Event, Move, MoveRefused, Outcome, Pin, Step, Strategy, advance, begin, check_move

# Seconds between two rounds of the drain's question, and between retries of a flip or
# a rollback a router missed.
POLL, RETRY = 0.05, 0.2
# One admin request's deadline: a router slower than this "does not answer".
REQUEST_TIMEOUT = 5.0


class RouterDown(Exception):
    """A router did not answer, or answered with an error."""


class Fleet:
    def __init__(self, session: aiohttp.ClientSession, urls: list[str], token: str | None) -> None:
        self.session = session
        self.urls = [u.rstrip("/") for u in urls]
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def _call(self, url: str, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self.session.request(method, url + path, headers=self.headers,
                                            data=None if body is None else orjson.dumps(body),
                                            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise RouterDown(f"{url}: {method} {path} answered {resp.status}: {data[:200].decode('utf-8', 'replace')}")
                return orjson.loads(data)
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            raise RouterDown(f"{url}: {method} {path}: {type(exc).__name__} {exc}".rstrip()) from None

    async def each(self, method: str, path: str, body: Any = None, urls: list[str] | None = None
                   ) -> tuple[dict[str, Any], dict[str, str]]:
        """Ask every router (or `urls`) at once: (answers by url, errors by url)."""
        urls = self.urls if urls is None else urls
        results = await asyncio.gather(*(self._call(u, method, path, body) for u in urls), return_exceptions=True)
        answers, errors = {}, {}
        for url, result in zip(urls, results):
            if isinstance(result, RouterDown):
                errors[url] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[url] = result
        return answers, errors


class FleetMove:
    def __init__(self, fleet: Fleet, migration: Migration, out=sys.stderr, close_tunnels: bool = False) -> None:
        self.fleet = fleet
        self.close_tunnels = close_tunnels
        self.migration = migration
        self.out = out
        self.flipped: set[str] = set()        # routers that took the flip
        self.restored: set[str] = set()       # routers that took the rollback

    def say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.out, flush=True)

    async def prepare(self, tenant: str, target: str, strategy: Strategy, timeout: float,
                      cross_residency: bool) -> Move:
        """The move, from what every router says of the tenant now; MoveRefused if the
        routers disagree, one does not answer, or the move cannot begin."""
        path = f"/tenants/{tenant}"
        answers, errors = await self.fleet.each("GET", path)
        if errors:
            raise MoveRefused(503, "; ".join(errors.values()))
        pins = {url: orjson.dumps(a["pin"]) for url, a in answers.items()}
        if len(set(pins.values())) > 1:
            raise MoveRefused(409, "the routers disagree on the tenant's pin: " +
                              ", ".join(f"{u}: {p.decode()}" for u, p in pins.items()))
        first = answers[self.fleet.urls[0]]
        if any(a["moving"] for a in answers.values()):
            raise MoveRefused(409, f"tenant {tenant!r} is being moved on a router already")
        pin = first["pin"]
        if pin is not None and pin["mode"] == "paused":
            raise MoveRefused(409, f"tenant {tenant!r} is paused: set its pin's mode back first (or finish the "
                                   "move that paused it)")
        stamps_answers, errors = await self.fleet.each("GET", "/stamps")
        if errors:
            raise MoveRefused(503, "; ".join(errors.values()))
        stamps = {s["name"]: s["residency"] for s in stamps_answers[self.fleet.urls[0]]["stamps"]}
        check_move(tenant, target, first["stamp"], stamps, cross_residency=cross_residency)
        prior = Pin(pin["stamp"], pin["mode"]) if pin is not None else Pin(None)
        return begin(tenant, first["stamp"], target, strategy, prior, timeout=timeout, now=time.time())

    async def run(self, move: Move) -> Move:
        self.say(f"move of {move.tenant!r} from {move.source} to {move.target} ({move.strategy.value}) on "
                 f"{len(self.fleet.urls)} router(s)")
        while move.moving:
            step = move.step
            began = time.monotonic()
            try:
                event, detail = await asyncio.wait_for(self._step(move), move.until(time.time()))
            except asyncio.TimeoutError:
                event, detail = Event.TIMED_OUT, f"the move's deadline passed during {step.value}"
            except HookFailed as exc:
                event, detail = Event.FAILED, str(exc)
            except Exception as exc:  # noqa: BLE001 - a fault here must roll back, not leave routers paused
                event, detail = Event.FAILED, f"{type(exc).__name__}: {exc}"
            move = advance(move, event, time.time(), detail)
            self.say(f"{step.value}: {event.value} in {time.monotonic() - began:.3f}s ({detail})")
            if move.step is step and move.moving:
                await asyncio.sleep(RETRY)
        self.say(f"{move.outcome.value}" + (f": {move.error}" if move.error else ""))
        return move

    async def _step(self, move: Move) -> tuple[Event, str]:
        path = f"/tenants/{move.tenant}"
        fleet = self.fleet
        if move.step is Step.PAUSE:
            answers, errors = await fleet.each("PUT", path, {"stamp": move.source, "mode": move.mode})
            return self._event(answers, errors, "paused")
        if move.step is Step.DRAIN:
            writes_only = move.strategy is Strategy.READ_ONLY
            rounds = 0
            if self.close_tunnels:
                _, errors = await fleet.each("DELETE", f"{path}/tunnels")
                if errors:
                    return Event.FAILED, "; ".join(errors.values())
            while True:
                answers, errors = await fleet.each("GET", path)
                if errors:
                    return Event.FAILED, "; ".join(errors.values())
                if not any(_busy(a, writes_only) for a in answers.values()):
                    return Event.OK, f"nothing{' written' if writes_only else ''} in flight on any router " \
                                     f"after {rounds} round(s)"
                rounds += 1
                await asyncio.sleep(POLL)
        if move.step is Step.HOOK:
            return Event.OK, await run_hook(self.migration, move.tenant, move.source, move.target)
        if move.step is Step.FLIP:
            if not self.flipped:
                # Every router must still be there, holding the pause, before any flips.
                answers, errors = await fleet.each("GET", path)
                lost = [u for u, a in answers.items() if a["pin"] != {"stamp": move.source, "mode": move.mode}]
                if errors or lost:
                    return Event.FAILED, "; ".join(list(errors.values()) +
                                                   [f"{u} no longer holds the paused pin" for u in lost])
            todo = [u for u in fleet.urls if u not in self.flipped]
            answers, errors = await fleet.each("PUT", path, {"stamp": move.target, "mode": move.flipped.mode},
                                               urls=todo)
            self.flipped.update(answers)
            if not errors:
                return Event.OK, f"{len(self.flipped)} router(s) on {move.target}"
            return (Event.PARTIAL if self.flipped else Event.FAILED), "; ".join(errors.values())
        if move.step is Step.ROLLBACK:
            todo = [u for u in fleet.urls if u not in self.restored]
            if move.prior.stamp is None:
                answers, errors = await self._unpin(path, todo)
            else:
                answers, errors = await fleet.each("PUT", path, {"stamp": move.prior.stamp, "mode": move.prior.mode},
                                                   urls=todo)
            self.restored.update(answers)
            return self._event(answers, errors, "restored", done=self.restored)
        raise AssertionError(f"no step {move.step}")

    async def _unpin(self, path: str, urls: list[str]) -> tuple[dict, dict]:
        answers, errors = await self.fleet.each("DELETE", path, urls=urls)
        # A router that never took the pause has no pin to delete (404): it is as it was.
        for url, error in list(errors.items()):
            if " answered 404" in error:
                answers[url] = errors.pop(url)
        return answers, errors

    def _event(self, answers: dict, errors: dict, what: str, done: set | None = None) -> tuple[Event, str]:
        if not errors:
            return Event.OK, f"{len(done if done is not None else answers)} router(s) {what}"
        took = done if done is not None else answers
        return (Event.PARTIAL if took else Event.FAILED), "; ".join(errors.values())


def _busy(answer: dict, writes_only: bool) -> bool:
    if answer.get("workers_unanswered"):
        return True
    return any((c["writes"] if writes_only else c["requests"]) or c["tunnels"] for c in answer["in_flight"].values())


async def migrate(args) -> int:
    from router.config.units import parse_duration
    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    try:
        migration = Migration(hook_url=args.hook_url, hook_command=args.hook_command)
    except ValueError as exc:          # pydantic's ValidationError: a hook URL that is not http(s)
        print(f"stamp-router migrate: --hook-url: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}",
              file=sys.stderr)
        return 1
    async with aiohttp.ClientSession() as session:
        runner = FleetMove(Fleet(session, args.routers, token), migration, close_tunnels=args.close_tunnels)
        try:
            move = await runner.prepare(args.tenant, args.to, Strategy(args.strategy), parse_duration(args.timeout),
                                        args.allow_cross_residency)
        except MoveRefused as exc:
            print(f"stamp-router migrate: {exc.message}", file=sys.stderr)
            return 1
        move = await runner.run(move)
    out = move.as_dict()
    out["routers"] = {"flipped": sorted(runner.flipped), "rolled_back": sorted(runner.restored)}
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return {Outcome.COMPLETED: 0, Outcome.ROLLED_BACK: 1}.get(move.outcome, 2)


def add_parser(sub) -> None:
    p = sub.add_parser("migrate", help="move a tenant to another stamp across several routers")
    p.add_argument("tenant", help="the tenant id")
    p.add_argument("--to", required=True, help="the stamp to move the tenant to")
    p.add_argument("--routers", nargs="+", required=True, metavar="URL",
                   help="the admin API of every router that serves the tenant (http://HOST:PORT)")
    p.add_argument("--strategy", choices=[s.value for s in Strategy], default="pause",
                   help="pause: the tenant's requests are held during the move; read-only: reads go on, writes get 403")
    p.add_argument("--timeout", default="60s", help="the move's deadline (a duration); past it, it rolls back")
    p.add_argument("--token-file", help="file holding the routers' admin bearer token (admin.token_file)")
    hook = p.add_mutually_exclusive_group()
    hook.add_argument("--hook-url", help="POSTed {tenant, from, to} once; a 2xx with an empty or JSON body means "
                      "the data is in place (as [migration] hook_url)")
    hook.add_argument("--hook-command", nargs="+", metavar="ARG", help="run once with TENANT, FROM_STAMP, TO_STAMP "
                      "in its environment; exit 0 means the data is in place")
    p.add_argument("--allow-cross-residency", action="store_true", help="allow a stamp of another residency")
    p.add_argument("--close-tunnels", action="store_true", help="close the tenant's WebSocket tunnels after the "
                   "pause instead of waiting for them to end (their clients reconnect, and are held)")
    p.set_defaults(func=lambda args: asyncio.run(migrate(args)))
