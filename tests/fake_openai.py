"""A scripted OpenAI-compatible server on loopback (stdlib HTTP, one thread per
connection) for tests of the HTTP client, replica discovery and the interpret stage.

Each POST takes the next action of ``script``: "ok", ("status", code[, headers]), "drop",
"hang"/"gate" (wait for ``release``), "badjson", "nochoices", "empty", "badusage",
"nousage" (a good reply without ``usage``), ("trickle", n) (a valid reply sent one byte
per 20 ms, ``n`` bytes of padding first; ``n=None``: padding that never ends). With
``send_usage = False`` no reply carries ``usage``. Every POST is recorded in
``requests`` (path, headers, body), every GET in ``gets``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    """Scripted OpenAI-compatible server: ``script`` is consumed one action per request."""

    def __init__(self) -> None:
        self.script: list = []
        self.requests: list[dict] = []
        self.gets: list[str] = []
        self.trickles_finished = 0
        self.send_usage = True
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with fake._lock:
                    fake.gets.append(self.path)
                self._send(200, {"data": [{"id": "fake"}]})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                with fake._lock:
                    fake.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    action = fake.script.pop(0) if fake.script else "ok"
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._act(action, body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _act(self, action: object, body: dict) -> None:
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action in ("hang", "gate"):
                    fake.release.wait(10)
                    if action == "hang":
                        return self._send(200, _reply(body, "late"))
                    return self._send(200, _reply(body, "ok"))
                if isinstance(action, tuple) and action[0] == "status":
                    return self._send(action[1], {"error": "scripted"}, action[2:])
                if isinstance(action, tuple) and action[0] == "trickle":
                    return self._trickle(action[1], body)
                if action == "badjson":
                    return self._raw(200, b"{not json")
                if action == "nochoices":
                    return self._send(200, {"choices": [], "usage": {}})
                if action == "empty":
                    return self._send(200, _reply(body, ""))
                if action == "badusage":
                    return self._send(200, {**_reply(body, "hi"), "usage": {"prompt_tokens": -3}})
                reply = _reply(body, "Explanation: the word 'the'")
                if action == "nousage" or not fake.send_usage:
                    reply.pop("usage", None)
                self._send(200, reply)

            def _trickle(self, pad: int | None, body: dict) -> None:
                """A valid reply behind ``pad`` leading spaces (JSON allows them), one
                byte per 20 ms: a reader that waits per read never times out."""
                data = json.dumps(_reply(body, "Explanation: slow")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) + (pad or 10**9)))
                self.end_headers()
                stream = b" " * pad + data if pad is not None else None
                sent = 0
                try:
                    while stream is None or sent < len(stream):
                        if fake.release.is_set():
                            return
                        self.wfile.write(b" " if stream is None else stream[sent : sent + 1])
                        self.wfile.flush()
                        sent += 1
                        time.sleep(0.02)
                except OSError:  # the client hung up
                    return
                with fake._lock:
                    fake.trickles_finished += 1

            def _send(self, code: int, obj: dict, headers: tuple = ()) -> None:
                self._raw(code, json.dumps(obj).encode(), dict(headers))

            def _raw(self, code: int, data: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _reply(body: dict, text: str) -> dict:
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    if "messages" in body and body.get("logprobs"):
        top = [{"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.8},
               {"token": " yes", "logprob": -4.0}]  # fmt: skip
        content = [{"token": "Yes", "logprob": -0.2, "top_logprobs": top}]
        choice = {
            "message": {"role": "assistant", "content": "Yes"},
            "logprobs": {"content": content},
        }
        return {"choices": [choice], "usage": usage}
    if "messages" in body:
        return {"choices": [{"message": {"role": "assistant", "content": text}}], "usage": usage}
    if body.get("echo"):
        return _echo(body["prompt"])
    return {"choices": [{"text": text}], "usage": usage}


def _echo(prompt: str) -> dict:
    """Echo a prompt split into word-ish tokens; log-prob of token i = -0.1 * i."""
    toks = re.findall(r"<\|[a-z]+\|>|\s*[^\s<]+|\s+", prompt) + [" gen"]
    lps = [None] + [-0.1 * i for i in range(1, len(toks))]
    tops = [None] + [{t: -0.1 * i, "7": -0.5} for i, t in enumerate(toks) if i]
    lp = {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops}
    return {"choices": [{"text": prompt + " gen", "logprobs": lp}],
            "usage": {"prompt_tokens": len(toks) - 1, "completion_tokens": 1}}  # fmt: skip
