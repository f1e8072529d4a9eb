"""A local stand-in for the OpenAI and Anthropic HTTP APIs, for the demo and for tests.

It speaks the documented wire formats, streaming included, so the real client libraries run
their real code paths against it:
- OpenAI `POST /v1/chat/completions` (JSON, or SSE chunks with a final usage chunk when
  `stream_options.include_usage` is set), with `prompt_tokens_details.cached_tokens`;
  `POST /v1/responses` (JSON, or the SSE events `response.created`, `response.output_item.added`,
  `response.output_text.delta` … `response.completed`), reporting cached input tokens and, for
  reasoning models (o-series, gpt-5), reasoning tokens;
  `POST /v1/embeddings`;
- Anthropic `POST /v1/messages` (JSON, or the SSE event sequence `message_start` …
  `message_stop`), with `cache_read_input_tokens` / `cache_creation_input_tokens`.
Token counts are deterministic (about four characters a token), so identical requests cost the
same and growing conversations cost more. Prompt caching is simulated: a request sharing a long
prefix with an earlier one (within five minutes) reports that prefix as cached. Failures can be
scripted (`fail_next(429, retry_after=0.01)`), and every request is recorded.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LLMServer"]

_CACHE_TTL = 300.0
_MIN_CACHED = 1024  # providers cache prefixes of at least this many tokens…
_CACHE_STEP = 128  # …in steps of this many
_REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")  # Responses API models that report reasoning tokens
_REASONING_EFFORT = {"none": 0, "minimal": 0, "low": 2, "medium": 8, "high": 32}  # × the answer's tokens


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    times: int


@dataclass
class LLMServer:
    host: str = "127.0.0.1"
    port: int = 0
    reply: str = "Done."
    #: the next chat completions (OpenAI, not streamed) answer with these tool calls, one per
    #: request: `(name, arguments)` or `(name, arguments, usage)` to give the usage it reports
    tool_calls: list[tuple[Any, ...]] = field(default_factory=list)
    #: seconds each answer takes, plus this much per 100 output tokens (a model's pace, roughly)
    latency: float = 0.0
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _prefixes: list[tuple[float, str, str]] = field(default_factory=list)  # (time, model, prompt text)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # --- control ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, status: int, *, retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next `times` requests with this HTTP error (429, 500, 503, 529, …)."""
        with self._lock:
            self._failures.append(_Failure(status, retry_after, times))

    def __enter__(self) -> LLMServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out as separate writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every kept-alive request
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server._handle(self)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True, name="llm-server").start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- behaviour ----------------------------------------------------------------------------

    def _cached(self, model: str, prompt: str) -> int:
        """Tokens of the longest prefix shared with a recent request for the same model."""
        now = time.monotonic()
        best = 0
        with self._lock:
            self._prefixes = [p for p in self._prefixes if now - p[0] < _CACHE_TTL]
            for _, seen_model, seen in self._prefixes:
                if seen_model != model:
                    continue
                shared = 0
                for a, b in zip(seen, prompt, strict=False):
                    if a != b:
                        break
                    shared += 1
                best = max(best, shared // 4)
            self._prefixes.append((now, model, prompt))
            del self._prefixes[:-256]  # the recent prompts are enough, and each request scans them
        return best // _CACHE_STEP * _CACHE_STEP if best >= _MIN_CACHED else 0

    def _failure(self) -> _Failure | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            failure.times -= 1
            if failure.times <= 0:
                self._failures.pop(0)
            return failure

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("content-length") or 0)) or b"{}")
        with self._lock:
            self.requests.append((h.path, body))
        anthropic = h.path.rstrip("/").endswith("/messages")
        failure = self._failure()
        if self.latency:
            time.sleep(self.latency * (1 + (0 if failure else _tokens(self.reply) / 100)))
        if failure is not None:
            self._error(h, failure, anthropic)
            return
        if h.path.rstrip("/").endswith("/chat/completions"):
            self._openai_chat(h, body)
        elif h.path.rstrip("/").endswith("/responses"):
            self._openai_responses(h, body)
        elif h.path.rstrip("/").endswith("/embeddings"):
            self._openai_embeddings(h, body)
        elif anthropic:
            self._anthropic_messages(h, body)
        else:
            self._json(h, 404, {"error": {"message": f"no route {h.path}", "type": "invalid_request_error"}})

    def _json(self, h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, failure: _Failure, anthropic: bool) -> None:
        kinds = {429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}
        kind = kinds.get(failure.status, "api_error")
        headers = {}
        if failure.retry_after is not None:
            headers["retry-after-ms"] = str(int(failure.retry_after * 1000))
            headers["retry-after"] = str(max(0, round(failure.retry_after)))
        if anthropic:
            payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": f"{kind} (scripted)"}}
        else:
            code = "rate_limit_exceeded" if failure.status == 429 else None
            payload = {"error": {"message": f"{kind} (scripted)", "type": kind, "param": None, "code": code}}
        self._json(h, failure.status, payload, headers)

    def _sse(self, h: BaseHTTPRequestHandler, events: Iterator[tuple[str | None, Any]]) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            for event, data in events:
                text = (f"event: {event}\n" if event else "") + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
                h.wfile.write(text.encode())
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (closed the stream early): as a real API, just stop

    def _openai_chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        model = str(body.get("model", "gpt-4o-mini"))
        prompt = json.dumps(body.get("messages", []), sort_keys=True)
        prompt_tokens, completion_tokens = _tokens(prompt), _tokens(self.reply)
        usage = {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": min(self._cached(model, prompt), prompt_tokens)},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }  # fmt: skip
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        served = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}.get(model, model)
        with self._lock:
            scripted = self.tool_calls.pop(0) if self.tool_calls and not body.get("stream") else None
        if scripted is not None:
            name, arguments, *rest = scripted
            call = {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip
            self._json(h, 200, {
                "id": ident, "object": "chat.completion", "created": created, "model": served,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                             "finish_reason": "tool_calls", "logprobs": None}],
                "usage": rest[0] if rest else usage,
            })  # fmt: skip
            return
        if not body.get("stream"):
            self._json(h, 200, {
                "id": ident, "object": "chat.completion", "created": created, "model": served,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": usage,
            })  # fmt: skip
            return

        def chunks() -> Iterator[tuple[str | None, Any]]:
            base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": served}
            yield None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
            for word in self.reply.split(" "):
                yield None, {**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            yield None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            if (body.get("stream_options") or {}).get("include_usage"):
                yield None, {**base, "choices": [], "usage": usage}
            yield None, "[DONE]"

        self._sse(h, chunks())

    def _openai_responses(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """`POST /v1/responses`: one output message (after a reasoning item for reasoning models, whose
        reasoning tokens count in `output_tokens`); streamed in the documented event order."""
        model = str(body.get("model", "gpt-4o-mini"))
        prompt = json.dumps([body.get("instructions", ""), body.get("input", "")], sort_keys=True)
        input_tokens, text_tokens = _tokens(prompt), _tokens(self.reply)
        reasoning_tokens = 0
        if model.startswith(_REASONING_MODELS):
            effort = str((body.get("reasoning") or {}).get("effort") or "medium")
            reasoning_tokens = _REASONING_EFFORT.get(effort, 8) * text_tokens
        output_tokens = text_tokens + reasoning_tokens
        usage = {"input_tokens": input_tokens,
                 "input_tokens_details": {"cached_tokens": min(self._cached(model, prompt), input_tokens)},
                 "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                 "total_tokens": input_tokens + output_tokens}  # fmt: skip
        ident, item = f"resp_{uuid.uuid4().hex[:24]}", f"msg_{uuid.uuid4().hex[:24]}"
        text = {"type": "output_text", "text": self.reply, "annotations": [], "logprobs": []}
        message = {"type": "message", "id": item, "status": "completed", "role": "assistant", "content": [text]}
        output: list[dict[str, Any]] = [message]
        if reasoning_tokens:
            output.insert(0, {"type": "reasoning", "id": f"rs_{uuid.uuid4().hex[:24]}", "summary": []})
        response = {"id": ident, "object": "response", "created_at": int(time.time()), "status": "completed",
                    "model": {"gpt-4o": "gpt-4o-2024-08-06"}.get(model, model), "output": output,
                    "usage": usage, "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
                    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "metadata": {}}  # fmt: skip
        if not body.get("stream"):
            self._json(h, 200, response)
            return

        def events() -> Iterator[tuple[str | None, Any]]:
            seq = itertools.count()

            def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
                return kind, {"type": kind, "sequence_number": next(seq), **fields}

            started = {**response, "status": "in_progress", "output": [], "usage": None}
            yield event("response.created", response=started)
            yield event("response.in_progress", response=started)
            at = len(output) - 1  # the message's output index
            if reasoning_tokens:
                yield event("response.output_item.added", output_index=0, item=output[0])
                yield event("response.output_item.done", output_index=0, item=output[0])
            where = {"item_id": item, "output_index": at, "content_index": 0}
            yield event("response.output_item.added", output_index=at,
                        item={**message, "status": "in_progress", "content": []})  # fmt: skip
            yield event("response.content_part.added", **where, part={**text, "text": ""})
            for word in self.reply.split(" "):
                yield event("response.output_text.delta", **where, delta=word + " ", logprobs=[])
            yield event("response.output_text.done", **where, text=self.reply, logprobs=[])
            yield event("response.content_part.done", **where, part=text)
            yield event("response.output_item.done", output_index=at, item=message)
            yield event("response.completed", response=response)

        self._sse(h, events())

    def _openai_embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """`POST /v1/embeddings`: a deterministic vector per input (base64 float32 when asked, as the
        client does by default)."""
        inputs = body.get("input", "")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        dims = int(body.get("dimensions") or 8)
        data = []
        for i, text in enumerate(inputs):
            seed = sum(str(text).encode()) or 1
            vector = [((seed * (k + 1)) % 1000) / 1000 for k in range(dims)]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(_tokens(str(t)) for t in inputs)
        self._json(h, 200, {"object": "list", "data": data, "model": body.get("model", "text-embedding-3-small"),
                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip

    def _anthropic_messages(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        model = str(body.get("model", "claude-sonnet-4-6"))
        prompt = json.dumps([body.get("system", ""), body.get("messages", [])], sort_keys=True)
        total = _tokens(prompt)
        cached = min(self._cached(model, prompt), total)
        # Anthropic reports input_tokens *excluding* cache reads and writes.
        usage = {"input_tokens": total - cached, "output_tokens": _tokens(self.reply),
                 "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}  # fmt: skip
        ident = f"msg_{uuid.uuid4().hex[:24]}"
        message = {"id": ident, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": self.reply}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": usage}  # fmt: skip
        if not body.get("stream"):
            self._json(h, 200, message)
            return

        def events() -> Iterator[tuple[str | None, Any]]:
            start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
            yield "message_start", {"type": "message_start", "message": start}
            yield "content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "text", "text": ""}}  # fmt: skip
            for word in self.reply.split(" "):
                yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": word + " "}}  # fmt: skip
            yield "content_block_stop", {"type": "content_block_stop", "index": 0}
            yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                    "usage": {"output_tokens": usage["output_tokens"]}}  # fmt: skip
            yield "message_stop", {"type": "message_stop"}

        self._sse(h, events())
