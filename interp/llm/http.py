"""OpenAI-compatible HTTP backend: vLLM servers, llama.cpp's server, OpenRouter.

One ``OpenAIClient`` speaks to one or more *replicas* of the same model:

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
* **Accounting.** Token counts come from ``usage`` (``prompt_tokens``,
  ``completion_tokens``, ``prompt_tokens_details.cached_tokens``); a reply without it
  is counted with ``llm.tokenizer`` or flagged ``usage_missing``, with one warning
  (:mod:`interp.llm.usage`). ``stats`` counts requests, retries, failovers, failures
  and those replies so a stage can report them.
* **Secrets.** The API key is read from the environment variable named by
  ``llm.api_key_env`` when the client is built; it is sent as a bearer header only to
  the configured ``llm.base_urls``, never to a replica found by ``discover`` or set with
  ``set_urls`` (served replicas need no key), and never logged, stored, or part of
  ``model_id`` (hence of no cache key).

Log-probabilities: OpenAI-style servers return only the top ``llm.top_logprobs``
tokens per position, so a candidate outside that list reads as ``-inf``. See
:meth:`OpenAIClient.next_token_logprobs` for what that does to P(Yes)/P(No).
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

from interp.llm.base import ChoiceLogprobs, Generation, Message, TextLogprobs, check_messages
from interp.llm.config import LLMConfig
from interp.llm.usage import UsageCounter, usage_source

log = logging.getLogger(__name__)

NEG_INF = float("-inf")
SHIFTED_TOP_K = 200  # top list asked for when a server's echo is shifted (see _echoed_span)


class LLMHTTPError(RuntimeError):
    """The server refused the request for a reason retrying cannot fix (4xx, not 429)."""

    def __init__(self, message: str, status: int, raw: str) -> None:
        super().__init__(message)
        self.status = status
        self.raw = raw


class LLMResponseError(RuntimeError):
    """The server kept answering with something unusable; ``raw`` is its last body."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


class LLMUnavailableError(RuntimeError):
    """No replica answered usably (timeouts, refused connections, 429/5xx) within the
    retries: transient, so the work is redone later, never recorded as the latent's
    result. ``raw`` is the last error body a server sent ("" if none)."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class _Garbage(ValueError):
    """A 2xx body that cannot be used (retried, then raised as LLMResponseError)."""


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


class OpenAIClient:
    """``LLMClient`` over an OpenAI-compatible HTTP API (chat and legacy completions).

    ``discover`` returns the live base URLs (each ending in ``/v1``); it is called every
    ``refresh_s`` seconds and whenever no known replica is live. ``transport`` is for
    tests (an ``httpx`` transport).
    """

    one_request_per_prompt = True  # the ledger records each prompt of a batch as it returns

    def __init__(
        self,
        cfg: LLMConfig,
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
        self.served_model = cfg.served_model or cfg.model
        self.model_id = f"openai:{self.served_model}"
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
        self._tok: Any = None
        self._sleep = asyncio.sleep  # tests record the backoff instead of waiting
        self._warned_shift = False
        self.usage_counter = UsageCounter(self)  # replies without usage: counted or flagged

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"OpenAIClient(model={self.served_model!r}, urls={self.replicas.urls})"

    def headers_for(self, url: str) -> dict[str, str]:
        """The key goes only to a configured base URL, never to a discovered replica."""
        if self._keyed_headers and url in self._keyed_urls:
            return self._keyed_headers
        return self._headers

    # ------------------------------------------------------------------ public (async)
    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        """Chat completion; a chat ending with an assistant message is continued from it
        (rendered client-side with ``llm.tokenizer`` and sent to /completions)."""
        check_messages(messages)
        if max_new_tokens <= 0 or temperature < 0:
            raise ValueError("generate needs max_new_tokens > 0 and temperature >= 0")
        sampling = {"max_tokens": max_new_tokens, "temperature": temperature}
        if messages[-1]["role"] == "assistant":
            prompt = self.render_chat(messages, prefill=True, why="an assistant prefill")
            body = {"model": self.served_model, "prompt": prompt, **sampling}
            g = await self._request("completions", body, _parse_completion_text)
            return self.usage_counter.fill(g, prompt, g.text)
        body = {"model": self.served_model, "messages": messages, **sampling}
        g = await self._request("chat/completions", body, _parse_chat_text)
        return self.usage_counter.fill(g, messages, g.text)

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        """log P(first token of each candidate) as the reply's first token, per chat.

        One chat completion with ``max_tokens=1`` and ``top_logprobs=k`` per prompt
        (k = ``llm.top_logprobs``), all in flight at once. A candidate's first token is
        found by the tokenizer when ``llm.tokenizer`` is set, else as the longest top
        token that is a prefix of the candidate; leading spaces are ignored and tokens
        that match the same way are summed.

        The top-k cut: a candidate missing from the top k gets ``-inf``, although its
        true log-prob is only known to be at most the k-th listed one. So when the
        scorer normalises P(Yes) / (P(Yes) + P(No)) and "No" is missing, the result is
        1 (an upper bound); when both are missing the ratio is undefined (nan, the
        scorer's to handle). With an instruction-following model and k = 20 both
        answers are nearly always listed; a small k makes this bias real.
        """
        if not candidates:
            raise ValueError("candidates is empty: pass the answers to score, e.g. ['Yes', 'No']")
        for p in prompts:
            check_messages(p)
        targets = self._candidate_tokens(candidates)

        def parse(data: Any) -> ChoiceLogprobs:
            top = _chat_top(data)
            p, _, cached = _usage(data)
            return ChoiceLogprobs(_match(top, candidates, targets), p, cached, usage_source(data))

        async def one(messages: list[Message]) -> ChoiceLogprobs:
            body = {
                "model": self.served_model,
                "messages": messages,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": self.cfg.top_logprobs,
            }
            return self.usage_counter.fill(
                await self._request("chat/completions", body, parse), messages
            )

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        """Teacher-force ``continuation`` as the reply: /completions with ``echo``.

        The chat is rendered client-side with ``llm.tokenizer`` (the server's template
        cannot be reached through /completions); without one this raises ValueError.
        The reply's tokens are located in the echoed prompt by their text. Candidate
        log-probs per position come from the top-k lists (-inf outside the top k).
        """
        check_messages(messages)
        if not continuation:
            raise ValueError("continuation is empty: pass the reply text to score")
        head = self.render_chat(messages, prefill=False, why="continuation_logprobs")
        prompt = head + continuation
        targets = self._candidate_tokens(candidates) if candidates else []
        body = {"model": self.served_model, "prompt": prompt, "max_tokens": 1,
                "temperature": 0.0, "echo": True, "logprobs": self.cfg.top_logprobs}  # fmt: skip

        def parse(data: dict[str, Any]) -> tuple[TextLogprobs, bool]:
            toks, lps, tops, shifted = _echoed_span(data, prompt, continuation)
            cands = [_match(top, candidates, targets) if candidates else {} for top in tops]
            p, _, cached = _usage(data)
            return TextLogprobs(toks, lps, cands, p, cached, usage_source(data)), shifted

        out, shifted = await self._request("completions", body, parse)
        if shifted and NEG_INF in out.logprobs and body["logprobs"] < SHIFTED_TOP_K:
            # a token fell outside the short top list: ask once more with a long one
            body = {**body, "logprobs": SHIFTED_TOP_K}
            out, shifted = await self._request("completions", body, parse)
        if shifted and not self._warned_shift:
            self._warned_shift = True
            log.warning(
                "%s echoes log-probs shifted by one position (llama-cpp-python with a "
                "prompt that does not start with BOS): reading them from the top-%d lists, "
                "tokens outside those read -inf; vLLM or backend=transformers are exact",
                self.served_model, body["logprobs"],
            )  # fmt: skip
        return self.usage_counter.fill(out, prompt)

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

    # ------------------------------------------------------------------ templates
    def render_chat(self, messages: list[Message], *, prefill: bool, why: str) -> str:
        """The chat as the model sees it, assistant turn opened (or continued)."""
        tok = self._tokenizer(why)
        text = tok.apply_chat_template(
            messages, add_generation_prompt=not prefill, continue_final_message=prefill,
            tokenize=False,
        )  # fmt: skip
        # The server tokenises the prompt as plain text and adds BOS itself when its
        # tokenizer does: drop a rendered BOS then, or the model would see two.
        bos = tok.bos_token
        if bos and text.startswith(bos) and _adds_bos(tok):
            text = text[len(bos) :]
        return text

    def _tokenizer(self, why: str) -> Any:
        if self._tok is None:
            if not self.cfg.tokenizer:
                raise ValueError(
                    f"{why} over HTTP needs the served model's chat template: set "
                    "llm.tokenizer to the same model's tokenizer (a bundled name like "
                    "smollm2-135m-instruct, a local HF folder, or a hub id)"
                )
            from interp.models.load import load_tokenizer

            self._tok = load_tokenizer(self.cfg.tokenizer)
        return self._tok

    def _candidate_tokens(self, candidates: list[str]) -> list[str | None]:
        """Each candidate's first token as text (None = find it by prefix in the reply)."""
        if not self.cfg.tokenizer:
            return [None] * len(candidates)
        tok = self._tokenizer("candidate tokens")
        out: list[str | None] = []
        for c in candidates:
            ids = tok(c, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"candidate {c!r} tokenizes to nothing: use a non-empty word")
            out.append(tok.decode(ids[:1]).lstrip())
        return out

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
            self.usage_counter.server = url  # named in the warning
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


# ---------------------------------------------------------------------- helpers


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


def _adds_bos(tok: Any) -> bool:
    ids = tok("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and tok.bos_token_id is not None and ids[0] == tok.bos_token_id


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


def _usage(data: dict[str, Any]) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens; a malformed ``usage`` is garbage."""
    usage = data.get("usage")
    if usage is None:  # flagged by usage_source, counted by UsageCounter if it can
        return 0, 0, 0
    if not isinstance(usage, dict):
        raise _Garbage(f"usage is {usage!r}, not an object")
    p, c = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    for name, v in (("prompt_tokens", p), ("completion_tokens", c), ("cached_tokens", cached)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _Garbage(f"usage.{name}={v!r} is not a count")
    if cached > p:
        raise _Garbage(f"usage says {cached} cached of {p} prompt tokens")
    return p, c, cached


def _first_choice(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Garbage("the body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Garbage("the body has no choices")
    return choices[0]


def _parse_chat_text(data: Any) -> Generation:
    text = (_first_choice(data).get("message") or {}).get("content")
    if not isinstance(text, str) or not text.strip():
        raise _Garbage(f"empty completion (content={text!r})")
    p, c, cached = _usage(data)
    return Generation(text, p, c, cached, usage_source(data))


def _parse_completion_text(data: Any) -> Generation:
    text = _first_choice(data).get("text")
    if not isinstance(text, str) or not text.strip():
        raise _Garbage(f"empty completion (text={text!r})")
    p, c, cached = _usage(data)
    return Generation(text, p, c, cached, usage_source(data))


def _chat_top(data: Any) -> list[dict[str, Any]]:
    """The top-k list of the reply's first position."""
    lp = _first_choice(data).get("logprobs")
    if not isinstance(lp, dict) or not lp.get("content"):
        raise _Garbage(
            "no logprobs in the reply: the server must support logprobs/top_logprobs "
            "(llama.cpp's server needs --logits_all true)"
        )
    top = lp["content"][0].get("top_logprobs")
    if not isinstance(top, list) or not top:
        raise _Garbage("no top_logprobs in the reply")
    return top


def _logprob(v: Any) -> float:
    if v is None:
        return NEG_INF
    x = float(v)
    if math.isnan(x) or x > 1e-6:
        raise _Garbage(f"logprob {v!r} is not a log-probability")
    return min(x, 0.0)


def _as_pairs(top: Any) -> list[tuple[str, float]]:
    """A top-logprobs entry as (token, logprob) pairs (completions give a dict)."""
    if top is None:
        return []
    if isinstance(top, dict):
        return [(str(k), _logprob(v)) for k, v in top.items()]
    return [(str(t["token"]), _logprob(t["logprob"])) for t in top]


def _match(top: Any, candidates: Sequence[str], targets: Sequence[str | None]) -> dict[str, float]:
    """candidate -> log P(its first token) from one position's top list (-inf if absent)."""
    pairs = [(tok.lstrip(), lp) for tok, lp in _as_pairs(top)]
    out = {}
    for cand, target in zip(candidates, targets):
        want = target
        if want is None:  # no tokenizer: the longest listed token that starts the candidate
            prefixes = [t for t, _ in pairs if t and cand.startswith(t)]
            want = max(prefixes, key=len) if prefixes else None
        hits = [lp for t, lp in pairs if want and t == want]
        out[cand] = _logsumexp(hits) if hits else NEG_INF
    return out


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _echoed_span(
    data: Any, prompt: str, continuation: str
) -> tuple[list[str], list[float], list[Any], bool]:
    """Tokens, log-probs and top lists of ``continuation`` inside an echoed prompt, and
    whether the server's echo was shifted by one position.

    The echo covers the prompt's tokens (the first one without a log-prob), then usually
    the generated one, whose text (``text`` minus the prompt) is excluded from the
    search. The reply's tokens are those whose text overlaps the last occurrence of
    ``continuation``; a token straddling the boundary with the template counts as the
    reply's. Matching text, not token counts, keeps this independent of how a server
    renders special tokens or whether it echoes a BOS.

    Shifted echoes: llama-cpp-python (0.3.x) pairs token i with the distribution *after*
    token i when the prompt does not start with the model's BOS (Qwen's template, for
    one), so ``token_logprobs`` are garbage and ``top_logprobs[i]`` predicts token i+1.
    Which reading is right is decided from the whole echo (:func:`_is_shifted`); when
    shifted, token i's log-prob is read from ``top_logprobs[i-1]`` (-inf if outside the
    top k) and so are its candidates.
    """
    lp = _first_choice(data).get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        raise _Garbage("no echoed logprobs: the server must support echo with logprobs")
    toks = [str(t) for t in lp["tokens"]]
    lps, tops = lp.get("token_logprobs"), lp.get("top_logprobs")
    if not isinstance(lps, list) or len(lps) != len(toks):
        raise _Garbage("token_logprobs does not match tokens")
    tops = tops if isinstance(tops, list) and len(tops) == len(toks) else [None] * len(toks)
    text = _first_choice(data).get("text")
    generated = text[len(prompt) :] if isinstance(text, str) and text.startswith(prompt) else ""
    joined = "".join(toks)
    start = -1
    if generated and joined.endswith(generated):  # the generated token is echoed too
        start = joined.rfind(continuation, 0, len(joined) - len(generated))
    if start < 0:
        start = joined.rfind(continuation)
    if start < 0:
        raise _Garbage("the echoed tokens do not contain the continuation")
    stop = start + len(continuation)
    ends, pos = [], 0
    for t in toks:
        pos += len(t)
        ends.append(pos)
    idx = [i for i in range(len(toks)) if ends[i] > start and ends[i] - len(toks[i]) < stop]
    shifted = _is_shifted(toks, lps, tops)
    if shifted:
        if idx[0] == 0:
            raise _Garbage("the continuation starts the echo: nothing predicts it")
        rows = [_as_dict(tops[i - 1]) for i in idx]
        return (
            [toks[i] for i in idx],
            [r.get(toks[i], NEG_INF) for i, r in zip(idx, rows)],
            rows,
            True,
        )
    if any(lps[i] is None for i in idx):
        raise _Garbage("a token of the continuation has no log-prob")
    return [toks[i] for i in idx], [_logprob(lps[i]) for i in idx], [tops[i] for i in idx], False


def _as_dict(top: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for tok, lp in _as_pairs(top):
        out[tok] = max(out.get(tok, NEG_INF), lp)
    return out


def _is_shifted(toks: list[str], lps: list[Any], tops: list[Any]) -> bool:
    """Whether the echo pairs each token with the distribution after it (see above).

    Aligned, a token is often among the top k of its own list (its reported log-prob
    reaches the list's other entries); shifted, it is instead often listed one position
    earlier. Whitespace-only tokens are skipped (servers render special tokens as "").
    """
    inside = ahead = 0
    for i in range(1, len(toks)):
        if not toks[i].strip() or lps[i] is None:
            continue
        others = [v for k, v in _as_dict(tops[i]).items() if k != toks[i]]
        inside += bool(others) and _logprob(lps[i]) >= min(others)
        ahead += toks[i] in _as_dict(tops[i - 1])
    return ahead >= 3 and ahead > 2 * inside
