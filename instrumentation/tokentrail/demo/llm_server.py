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
prefix with an earlier one for the same model (within `cache_ttl` seconds) reports that prefix
as cached.

Each request can be scripted (`script(Reply(...))`): an HTTP error, a tool call, a reply cut off
at the output limit, a reply text, and a label. A label is written into what the provider
returns about the request (response ids, error messages, request-id headers), so a test can
find the spans any instrumentation made of that request without controlling their names. Every
request is recorded with the usage it was answered with (`calls`).
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Call", "LLMServer", "Reply"]

_MIN_CACHED = 1024  # providers cache prefixes of at least this many tokens…
_CACHE_STEP = 128  # …in steps of this many
_REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")  # Responses API models that report reasoning tokens
_REASONING_EFFORT = {"none": 0, "minimal": 0, "low": 2, "medium": 8, "high": 32}  # × the answer's tokens
_SERVED = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}  # snapshot names


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


@dataclass
class Reply:
    """How the stand-in answers one request."""

    #: written into the response's id and any error message, so the request's spans can be found
    label: str = ""
    #: an HTTP error status (429, 500, 529…) answers with the provider's error body
    status: int = 200
    retry_after: float | None = None
    #: the reply text (default: the server's `reply`)
    text: str | None = None
    #: a tool call instead of text: (name, arguments)
    tool: tuple[str, Any] | None = None
    #: the reply stopped at the output token limit (finish reason length / max_tokens / incomplete)
    truncated: bool = False
    #: the usage to report, in the provider's own shape, instead of the computed one
    usage: dict[str, Any] | None = None


@dataclass
class Call:
    """One request as the stand-in answered it. Tokens are OpenTelemetry's: input includes cache
    reads and writes, output includes reasoning."""

    label: str
    api: str  # "chat", "responses", "messages", "embeddings"
    model: str
    status: int
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    stream: bool = False
    at: float = 0.0  # time.time() when the answer was sent


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
    #: how long a prompt prefix stays cached
    cache_ttl: float = 300.0
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    _script: list[Reply] = field(default_factory=list)
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

    def script(self, *replies: Reply) -> None:
        """Answer the next requests, one each, as these replies say (before `fail_next` and
        `tool_calls`, which apply once the script is used up)."""
        with self._lock:
            self._script.extend(replies)

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
            self._prefixes = [p for p in self._prefixes if now - p[0] < self.cache_ttl]
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

    def _next(self, api: str, body: dict[str, Any]) -> Reply:
        """The scripted reply for this request, else the legacy queues, else a plain answer."""
        with self._lock:
            if self._script:
                return self._script.pop(0)
            if self._failures:
                failure = self._failures[0]
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.pop(0)
                return Reply(status=failure.status, retry_after=failure.retry_after)
            if api == "chat" and self.tool_calls and not body.get("stream"):
                name, arguments, *rest = self.tool_calls.pop(0)
                return Reply(tool=(name, arguments), usage=rest[0] if rest else None)
        return Reply()

    def _record(self, reply: Reply, api: str, model: str, body: dict[str, Any], **tokens: int) -> None:
        call = Call(
            reply.label, api, model, reply.status, stream=bool(body.get("stream")), at=time.time(), **tokens
        )
        with self._lock:
            self.calls.append(call)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("content-length") or 0)) or b"{}")
        with self._lock:
            self.requests.append((h.path, body))
        path = h.path.rstrip("/")
        api = next((a for suffix, a in _ROUTES if path.endswith(suffix)), "")
        reply = self._next(api, body)
        if self.latency:
            time.sleep(self.latency * (1 + (0 if reply.status != 200 else _tokens(self._text(reply)) / 100)))
        if reply.status != 200:
            self._record(reply, api, str(body.get("model", "")), body)
            self._error(h, reply, api == "messages")
            return
        if not api:
            self._json(h, 404, {"error": {"message": f"no route {h.path}", "type": "invalid_request_error"}})
            return
        getattr(self, f"_{api}")(h, body, reply)

    def _text(self, reply: Reply) -> str:
        return reply.text if reply.text is not None else self.reply

    def _request_id(self, reply: Reply) -> dict[str, str]:
        """The request-id headers the providers send with every answer, successful or not."""
        request_id = self._id("req_", reply)
        return {"x-request-id": request_id, "request-id": request_id}

    @staticmethod
    def _id(prefix: str, reply: Reply) -> str:
        return f"{prefix}{reply.label}{'-' if reply.label else ''}{uuid.uuid4().hex[:20]}"

    def _json(
        self, h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, reply: Reply, anthropic: bool) -> None:
        kinds = {429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}
        kind = kinds.get(reply.status, "api_error")
        message = f"{kind} (scripted)" + (f" [{reply.label}]" if reply.label else "")
        headers = self._request_id(reply)
        if reply.retry_after is not None:
            headers["retry-after-ms"] = str(int(reply.retry_after * 1000))
            headers["retry-after"] = str(max(0, round(reply.retry_after)))
        if anthropic:
            payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            code = "rate_limit_exceeded" if reply.status == 429 else None
            payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._json(h, reply.status, payload, headers)

    def _sse(self, h: BaseHTTPRequestHandler, events: Iterator[tuple[str | None, Any]], reply: Reply) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        for key, value in self._request_id(reply).items():
            h.send_header(key, value)
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            for event, data in events:
                text = (
                    f"event: {event}\n" if event else ""
                ) + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
                h.wfile.write(text.encode())
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (closed the stream early): as a real API, just stop

    def _answer(
        self,
        h: BaseHTTPRequestHandler,
        body: dict[str, Any],
        reply: Reply,
        payload: dict[str, Any],
        events: Callable[[], Iterator[tuple[str | None, Any]]],
    ) -> None:
        """The whole answer as JSON, or, when the request asks to stream, as server-sent events."""
        if body.get("stream"):
            self._sse(h, events(), reply)
        else:
            self._json(h, 200, payload, self._request_id(reply))

    # --- OpenAI chat completions -------------------------------------------------------------

    def _chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any], reply: Reply) -> None:
        model = str(body.get("model", "gpt-4o-mini"))
        prompt = json.dumps(body.get("messages", []), sort_keys=True)
        text = self._text(reply)
        prompt_tokens = _tokens(prompt)
        completion_tokens = _answer_tokens(reply, text)
        cached = min(self._cached(model, prompt), prompt_tokens)
        usage = reply.usage or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        self._record(
            reply,
            "chat",
            model,
            body,
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            cache_read_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)),
        )
        head = (self._id("chatcmpl-", reply), int(time.time()), _SERVED.get(model, model))
        finish = "length" if reply.truncated else "tool_calls" if reply.tool else "stop"
        call = _chat_tool_call(reply.tool) if reply.tool else None
        final_usage = usage if (body.get("stream_options") or {}).get("include_usage") else None
        self._answer(
            h,
            body,
            reply,
            _chat_completion(head, text, call, finish, usage),
            lambda: _chat_chunks(head, text, call, finish, final_usage),
        )

    # --- OpenAI Responses ----------------------------------------------------------------------

    def _responses(self, h: BaseHTTPRequestHandler, body: dict[str, Any], reply: Reply) -> None:
        """`POST /v1/responses`: one output message or function call (after a reasoning item for
        reasoning models, whose reasoning tokens count in `output_tokens`); streamed in the
        documented event order."""
        model = str(body.get("model", "gpt-4o-mini"))
        text = self._text(reply)
        usage = self._responses_usage(model, body, reply, text)
        self._record(
            reply,
            "responses",
            model,
            body,
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            cache_read_tokens=int((usage.get("input_tokens_details") or {}).get("cached_tokens", 0)),
            reasoning_tokens=int((usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)),
        )
        ident = self._id("resp_", reply)
        output = _response_output(reply, text, reasoning=bool(_reasoning_tokens(model, body, reply, text)))
        response = {
            "id": ident,
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if reply.truncated else "completed",
            "model": _SERVED.get(model, model) if model == "gpt-4o" else model,
            "output": output,
            "usage": usage,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if reply.truncated else None,
            "instructions": body.get("instructions"),
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": body.get("tools") or [],
            "metadata": {},
        }
        self._answer(h, body, reply, response, lambda: _response_events(response))

    def _responses_usage(self, model: str, body: dict[str, Any], reply: Reply, text: str) -> dict[str, Any]:
        """The scripted usage, else the computed one (only then does the prompt count for caching)."""
        if reply.usage:
            return reply.usage
        prompt = json.dumps([body.get("instructions", ""), body.get("input", "")], sort_keys=True)
        input_tokens = _tokens(prompt)
        reasoning_tokens = _reasoning_tokens(model, body, reply, text)
        output_tokens = _answer_tokens(reply, text) + reasoning_tokens
        return {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": min(self._cached(model, prompt), input_tokens)},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        }

    # --- OpenAI embeddings ---------------------------------------------------------------------

    def _embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any], reply: Reply) -> None:
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
        model = str(body.get("model", "text-embedding-3-small"))
        self._record(reply, "embeddings", model, body, input_tokens=tokens)
        self._json(
            h,
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # --- Anthropic messages --------------------------------------------------------------------

    def _messages(self, h: BaseHTTPRequestHandler, body: dict[str, Any], reply: Reply) -> None:
        model = str(body.get("model", "claude-sonnet-4-6"))
        prompt = json.dumps([body.get("system", ""), body.get("messages", [])], sort_keys=True)
        text = self._text(reply)
        total = _tokens(prompt)
        cached = min(self._cached(model, prompt), total)
        # Anthropic reports input_tokens *excluding* cache reads and writes.
        usage = reply.usage or {
            "input_tokens": total - cached,
            "output_tokens": _answer_tokens(reply, text),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        }
        read, write = (
            int(usage.get("cache_read_input_tokens") or 0),
            int(usage.get("cache_creation_input_tokens") or 0),
        )
        self._record(
            reply,
            "messages",
            model,
            body,
            input_tokens=int(usage.get("input_tokens", 0)) + read + write,
            output_tokens=int(usage.get("output_tokens", 0)),
            cache_read_tokens=read,
            cache_write_tokens=write,
        )
        message = {
            "id": self._id("msg_", reply),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [_anthropic_block(reply, text)],
            "stop_reason": "max_tokens" if reply.truncated else "tool_use" if reply.tool else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        self._answer(h, body, reply, message, lambda: _message_events(message))


_ROUTES = (
    ("/chat/completions", "chat"),
    ("/responses", "responses"),
    ("/embeddings", "embeddings"),
    ("/messages", "messages"),
)


# --- what the stand-in answers, by API and response kind -------------------------------------------


def _answer_tokens(reply: Reply, text: str) -> int:
    """Tokens of the answer: the tool call's arguments, or the text."""
    return _tokens(json.dumps(reply.tool[1]) if reply.tool else text)


def _reasoning_tokens(model: str, body: dict[str, Any], reply: Reply, text: str) -> int:
    """What a reasoning model (Responses API) spends before it answers, by the effort asked for."""
    if not model.startswith(_REASONING_MODELS):
        return 0
    effort = str((body.get("reasoning") or {}).get("effort") or "medium")
    return _REASONING_EFFORT.get(effort, 8) * _answer_tokens(reply, text)


def _event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    """A server-sent event whose name is repeated as the data's `type`, as both providers send them."""
    return kind, {"type": kind, **fields}


# OpenAI chat completions: one choice, a text or one tool call.


def _chat_tool_call(tool: tuple[str, Any]) -> dict[str, Any]:
    return {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": tool[0], "arguments": json.dumps(tool[1])},
    }


def _chat_head(kind: str, head: tuple[str, int, str]) -> dict[str, Any]:
    ident, created, served = head
    return {"id": ident, "object": kind, "created": created, "model": served}


def _chat_completion(
    head: tuple[str, int, str], text: str, call: dict[str, Any] | None, finish: str, usage: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if call else text}
    if call:
        message["tool_calls"] = [call]
    return {
        **_chat_head("chat.completion", head),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


def _chat_chunks(
    head: tuple[str, int, str],
    text: str,
    call: dict[str, Any] | None,
    finish: str,
    usage: dict[str, Any] | None,
) -> Iterator[tuple[str | None, Any]]:
    """The chunks of a streamed completion: the role, the text word by word (or the tool call), the
    finish reason, then the usage when the request asked for it (`stream_options.include_usage`)."""
    base = _chat_head("chat.completion.chunk", head)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    yield chunk({"role": "assistant", "content": ""})
    if call:
        yield chunk({"tool_calls": [{"index": 0, **call}]})
    else:
        for word in text.split(" "):
            yield chunk({"content": word + " "})
    yield chunk({}, finish)
    if usage is not None:
        yield None, {**base, "choices": [], "usage": usage}
    yield None, "[DONE]"


# OpenAI Responses: an output message or a function call, after a reasoning item for reasoning models.


def _response_output(reply: Reply, text: str, *, reasoning: bool) -> list[dict[str, Any]]:
    if reply.tool:
        message: dict[str, Any] = {
            "type": "function_call",
            "id": f"fc_{uuid.uuid4().hex[:24]}",
            "call_id": f"call_{uuid.uuid4().hex[:12]}",
            "name": reply.tool[0],
            "arguments": json.dumps(reply.tool[1]),
            "status": "completed",
        }
    else:
        message = {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
    output = [message]
    if reasoning:
        output.insert(0, {"type": "reasoning", "id": f"rs_{uuid.uuid4().hex[:24]}", "summary": []})
    return output


def _function_call_events(
    event: Callable[..., tuple[str, dict[str, Any]]], call: dict[str, Any], at: int
) -> Iterator[tuple[str | None, Any]]:
    yield event("response.output_item.added", output_index=at, item={**call, "arguments": ""})
    where = {"item_id": call["id"], "output_index": at}
    yield event("response.function_call_arguments.delta", **where, delta=call["arguments"])
    yield event("response.function_call_arguments.done", **where, arguments=call["arguments"])


def _output_text_events(
    event: Callable[..., tuple[str, dict[str, Any]]], message: dict[str, Any], at: int
) -> Iterator[tuple[str | None, Any]]:
    (content,) = message["content"]
    text = content["text"]
    where = {"item_id": message["id"], "output_index": at, "content_index": 0}
    started = {**message, "status": "in_progress", "content": []}
    yield event("response.output_item.added", output_index=at, item=started)
    yield event("response.content_part.added", **where, part={**content, "text": ""})
    for word in text.split(" "):
        yield event("response.output_text.delta", **where, delta=word + " ", logprobs=[])
    yield event("response.output_text.done", **where, text=text, logprobs=[])
    yield event("response.content_part.done", **where, part=content)


def _response_events(response: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    """A streamed response in the documented event order, each event numbered."""
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return _event(kind, sequence_number=next(numbers), **fields)

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    output = response["output"]
    *reasoning, message = output
    at = len(output) - 1  # the message's output index
    for item in reasoning:
        yield event("response.output_item.added", output_index=0, item=item)
        yield event("response.output_item.done", output_index=0, item=item)
    if message["type"] == "function_call":
        yield from _function_call_events(event, message, at)
    else:
        yield from _output_text_events(event, message, at)
    yield event("response.output_item.done", output_index=at, item=message)
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    yield event(final, response=response)


# Anthropic messages: one content block, a text or a tool use.


def _anthropic_block(reply: Reply, text: str) -> dict[str, Any]:
    if reply.tool:
        return {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:20]}",
            "name": reply.tool[0],
            "input": reply.tool[1],
        }
    return {"type": "text", "text": text}


def _message_events(message: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    """A streamed message: `message_start` with the usage so far, the block's start and deltas (the
    text word by word, or the tool input as JSON), then `message_delta` with the final usage."""
    (block,) = message["content"]
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield _event("message_start", message=start)
    if block["type"] == "tool_use":
        yield _event("content_block_start", index=0, content_block={**block, "input": {}})
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield _event("content_block_delta", index=0, delta=delta)
    else:
        yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        for word in block["text"].split(" "):
            yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": word + " "})
    yield _event("content_block_stop", index=0)
    # the final usage is cumulative and complete, as the API sends it now (some clients read the
    # input tokens from this event only)
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield _event("message_delta", delta=stop, usage=dict(usage))
    yield _event("message_stop")
