"""Reaching an OpenAI-compatible server: replicas, retries, deadlines and the API key.

:class:`HTTPTransport` POSTs one request body to one of the *replicas* of a model and
returns the parsed answer (:class:`interp.llm.http.OpenAIClient` builds on it):

* **Spreading and failover.** Each request goes to the live replica with the fewest
  requests in flight. A replica that refuses connections (its job died or was
  preempted) is set aside for ``down_s`` seconds and the request moves on at once to
  another one; with none left, the request waits (backoff) and asks ``discover`` (a
  callable returning the current URLs, e.g. read from the run folder by the serve
  stage) for fresh ones. ``set_urls`` replaces the list by hand.
* **Retries.** Timeouts, dropped connections, 429 (``Retry-After`` honoured), 5xx and
  unusable bodies (invalid JSON, no choices, empty text, malformed ``usage``) are
  retried ``max_retries`` times with exponential backoff and full jitter. Then the call
  raises :class:`LLMResponseError` when the server answered 2xx with an unusable body at
  least once (the reply is the problem: the raw body goes on the latent's record), else
  :class:`LLMUnavailableError` (only timeouts, transport errors, 429 or 5xx: the server
  is the problem, and the interpret stage leaves the range uncommitted for a rerun). A
  4xx other than 429 is the caller's mistake and raises :class:`LLMHTTPError` at once,
  with the fix.
* **Deadline.** Every attempt, body included, ends within ``llm.timeout_s`` of wall
  clock (``asyncio.wait_for`` around the whole request): a server that trickles bytes
  or never ends its response is cut there and the attempt counts as a timeout. httpx's
  own timeouts are per read, so they alone would let a trickle run forever.
* **Concurrency.** At most ``max_concurrency`` requests in flight from this client
  (an ``asyncio.Semaphore``), enough to keep a server's continuous batching full.
* **Secrets.** The API key is read from the environment variable named by
  ``llm.api_key_env`` when the client is built; it is sent as a bearer header only to
  the configured ``llm.base_urls``, never to a replica found by ``discover`` or set with
  ``set_urls`` (served replicas need no key), and never logged, stored, or part of
  ``model_id`` (hence of no cache key).
* **Stats.** ``stats`` counts requests, attempts, retries, failovers and failures so a
  stage can report them; a 2xx reply without ``usage`` is handed to ``_missing_usage``
  (the client counts it, :mod:`interp.llm.usage`).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from interp.llm.errors import LLMHTTPError, LLMResponseError, LLMUnavailableError
from interp.llm.http_wire import _Garbage
from interp.llm.usage import usage_source

log = logging.getLogger("interp.llm.http")  # one logger for the whole backend


_FIX_4XX = {
    400: "the request was rejected: check the prompt length against the server's context "
    "size and that the server supports the parameters sent",
    401: "the API key was refused: export it in the variable named by llm.api_key_env",
    403: "the API key has no access to this model: check llm.served_model and the key",
    404: "no such endpoint or model: llm.base_urls must end in /v1 and llm.served_model "
    "must be a name the server lists at /v1/models",
    422: "the server rejected a parameter: is it really OpenAI-compatible (vLLM, "
    "llama.cpp's server, OpenRouter)?",
}


class _Replicas:
    """The URLs of one model's replicas: in-flight counts, refused ones set aside."""

    def __init__(
        self,
        urls: Iterable[str],
        discover: Callable[[], Sequence[str]] | None,
        down_s: float,
        refresh_s: float,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.discover = discover
        self.down_s = down_s
        self.refresh_s = refresh_s
        self.in_flight: dict[str, int] = {}
        self.down_until: dict[str, float] = {}
        self._refreshed = time.monotonic() if self.urls else -math.inf

    def set_urls(self, urls: Iterable[str]) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.down_until = {u: t for u, t in self.down_until.items() if u in self.urls}
        self._refreshed = time.monotonic()

    def refresh(self, force: bool = False) -> None:
        if self.discover is None:
            return
        if force or time.monotonic() - self._refreshed >= self.refresh_s:
            urls = list(self.discover())
            if urls != self.urls:
                log.info("replicas now: %s", urls)
            self.set_urls(urls)

    def pick(self, avoid: str | None = None) -> str | None:
        """The live replica with the fewest requests in flight (not ``avoid`` if others)."""
        self.refresh()
        now = time.monotonic()
        live = [u for u in self.urls if self.down_until.get(u, 0.0) <= now]
        if not live and self.discover is not None:
            self.refresh(force=True)
            live = [u for u in self.urls if self.down_until.get(u, 0.0) <= now]
        if len(live) > 1 and avoid in live:
            live.remove(avoid)
        if not live:
            return None
        return min(live, key=lambda u: self.in_flight.get(u, 0))

    def mark_down(self, url: str) -> None:
        self.down_until[url] = time.monotonic() + self.down_s


@dataclass
class _LoopState:
    """The parts bound to one event loop (an AsyncClient and a Semaphore are)."""

    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient
    sem: asyncio.Semaphore


class HTTPTransport:
    """Requests to the replicas of one model, with the retries, failover, deadline,
    concurrency bound and API-key handling described in the module docstring.

    ``discover`` returns the live base URLs (each ending in ``/v1``); it is called every
    ``refresh_s`` seconds and whenever no known replica is live. ``transport`` is for
    tests (an ``httpx`` transport).
    """

    def __init__(
        self,
        cfg: Any,
        *,
        discover: Callable[[], Sequence[str]] | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 300.0,
        down_s: float = 10.0,
        refresh_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not cfg.base_urls and discover is None:
            raise ValueError(
                "backend=http needs llm.base_urls (e.g. ['http://127.0.0.1:8000/v1']) or a "
                "running serve stage whose replicas it can discover"
            )
        self.cfg = cfg
        self.replicas = _Replicas(cfg.base_urls, discover, down_s, refresh_s)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.stats: dict[str, int] = dict.fromkeys(
            ("requests", "attempts", "retries", "failovers", "rate_limited", "timeouts",
             "server_errors", "bad_bodies", "failed"), 0)  # fmt: skip
        self._headers = {"Content-Type": "application/json"}
        key = _api_key(cfg.api_key_env)
        self._keyed_headers = {**self._headers, "Authorization": f"Bearer {key}"} if key else {}
        self._keyed_urls = frozenset(u.rstrip("/") for u in cfg.base_urls)
        self._transport = transport
        self._state: _LoopState | None = None
        self._sleep = asyncio.sleep  # tests record the backoff instead of waiting

    def headers_for(self, url: str) -> dict[str, str]:
        """The key goes only to a configured base URL, never to a discovered replica."""
        if self._keyed_headers and url in self._keyed_urls:
            return self._keyed_headers
        return self._headers

    def set_urls(self, urls: Iterable[str]) -> None:
        """Replace the replica list (e.g. after the serve stage published new ones)."""
        self.replicas.set_urls(urls)

    async def aclose(self) -> None:
        if self._state is not None:
            await self._state.http.aclose()
            self._state = None

    def close(self) -> None:
        """Drop the connection pool (closing it if its event loop can still run)."""
        state, self._state = self._state, None
        if state is not None and not state.loop.is_closed() and not state.loop.is_running():
            state.loop.run_until_complete(state.http.aclose())

    def _missing_usage(self, url: str) -> None:
        """A 2xx reply from ``url`` had no ``usage`` (subclasses count it)."""

    # ------------------------------------------------------------------ transport
    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            timeout = httpx.Timeout(self.cfg.timeout_s, connect=min(10.0, self.cfg.timeout_s))
            limits = httpx.Limits(max_connections=self.cfg.max_concurrency + 4)
            http = httpx.AsyncClient(timeout=timeout, limits=limits, transport=self._transport)
            self._state = _LoopState(loop, http, asyncio.Semaphore(self.cfg.max_concurrency))
        return self._state

    async def _request(self, path: str, body: dict[str, Any], parse: Callable[[Any], Any]) -> Any:
        """POST ``body`` to ``path`` on a replica, retrying; ``parse`` the JSON answer."""
        state = self._loop_state()
        self.stats["requests"] += 1
        async with state.sem:
            attempt, last_url, last_raw, why, garbage = 0, None, "", "", ""
            while True:
                url = self.replicas.pick(avoid=last_url)
                if url is None:
                    why = f"no live replica among {self.replicas.urls or 'none'}"
                else:
                    outcome = await self._attempt(state.http, url, path, body, parse)
                    if outcome.ok:
                        return outcome.value
                    last_url, why = url, outcome.why
                    last_raw = outcome.raw if outcome.raw is not None else last_raw
                    garbage = last_raw if outcome.garbage else garbage
                    if outcome.failover:
                        continue  # straight to another replica, no backoff
                attempt += 1
                if attempt > self.cfg.max_retries:
                    raise self._gave_up(path, attempt, why, last_raw, garbage)
                self.stats["retries"] += 1
                delay = self._delay(attempt, outcome.retry_after if url else None)
                log.warning("%s: %s; retry %d/%d in %.1fs", path, why, attempt,
                            self.cfg.max_retries, delay)  # fmt: skip
                await self._sleep(delay)

    def _gave_up(
        self, path: str, attempts: int, why: str, last_raw: str, garbage: str
    ) -> RuntimeError:
        """The error after the last retry: a response error if a 2xx body was unusable."""
        self.stats["failed"] += 1
        msg = f"{path}: gave up after {attempts} attempt(s): {why}"
        if garbage:
            return LLMResponseError(f"{msg}; last unusable body: {garbage[:200]!r}", garbage)
        if last_raw:
            msg += f"; last body: {last_raw[:200]!r}"
        return LLMUnavailableError(msg, last_raw)

    async def _attempt(
        self, http: httpx.AsyncClient, url: str, path: str, body: dict, parse: Callable
    ) -> _Outcome:
        self.stats["attempts"] += 1
        self.replicas.in_flight[url] = self.replicas.in_flight.get(url, 0) + 1
        post = http.post(f"{url}/{path}", json=body, headers=self.headers_for(url))
        try:
            resp = await asyncio.wait_for(post, self.cfg.timeout_s)  # body included
        except httpx.ConnectError as e:  # refused / unreachable: the replica is gone
            self.replicas.mark_down(url)
            self.stats["failovers"] += 1
            log.warning("replica %s refused the connection (%s): failing over", url, e)
            return _Outcome(why=f"{url} refused the connection", failover=True)
        except (httpx.TimeoutException, TimeoutError):
            self.stats["timeouts"] += 1
            return _Outcome(why=f"{url} did not answer within llm.timeout_s={self.cfg.timeout_s}s")
        except httpx.TransportError as e:  # dropped connection, protocol error
            self.stats["server_errors"] += 1
            return _Outcome(why=f"{url}: {type(e).__name__}: {e}")
        finally:
            self.replicas.in_flight[url] -= 1
        return self._judge(resp, url, parse)

    def _judge(self, resp: httpx.Response, url: str, parse: Callable) -> _Outcome:
        raw = resp.text
        if resp.status_code == 429:
            self.stats["rate_limited"] += 1
            return _Outcome(why=f"{url} answered 429 (rate limited)", raw=raw,
                            retry_after=_retry_after(resp.headers.get("Retry-After")))  # fmt: skip
        if resp.status_code >= 500:
            self.stats["server_errors"] += 1
            return _Outcome(why=f"{url} answered {resp.status_code}", raw=raw)
        if resp.status_code >= 400:
            self.stats["failed"] += 1
            fix = _FIX_4XX.get(resp.status_code, "the request was rejected")
            raise LLMHTTPError(
                f"{url} answered {resp.status_code}: {fix}. Server said: {raw[:300]!r}",
                resp.status_code,
                raw,
            )
        try:
            data = resp.json()
            value = parse(data)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            self.stats["bad_bodies"] += 1
            reason = str(e) if isinstance(e, _Garbage) else f"unusable body ({type(e).__name__})"
            return _Outcome(why=f"{url}: {reason}", raw=raw, garbage=True)
        if usage_source(data) == "missing":
            self._missing_usage(url)
        return _Outcome(ok=True, value=value)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        cap = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return random.uniform(0.5 * cap, cap)  # jitter: replicas' clients do not sync up


@dataclass
class _Outcome:
    ok: bool = False
    value: Any = None
    why: str = ""
    raw: str | None = None
    failover: bool = False
    retry_after: float | None = None
    garbage: bool = False  # a 2xx answer whose body is unusable (not the server being down)


def _api_key(env: str) -> str:
    if not env:
        return ""
    key = os.environ.get(env, "")
    if not key:
        raise ValueError(
            f"llm.api_key_env={env!r} but ${env} is not set: export {env}=<your key> "
            "before running (the key is never read from a config)"
        )
    return key


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
