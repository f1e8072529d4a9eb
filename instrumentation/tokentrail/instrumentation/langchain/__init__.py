"""langchain: LangChain and LangGraph runs as GenAI spans, from a callback handler on every callback manager.

LangChain reports each run (chain, graph, node, model call, tool, retriever) to the handlers of
its callback managers; wrapping `BaseCallbackManager.__init__` puts ours on every one of them,
inheritable, so runs nest by `run_id`/`parent_run_id` whatever the entry point:
- a LangGraph graph (or a legacy agent executor, or a run named like an agent) → `invoke_agent {name}`;
- any other chain, including graph nodes → `chain {name}` (INTERNAL, step kind other/chain);
- a chat model → `chat {model}`, a completion LLM → `text_completion {model}` (CLIENT), with usage
  from the standardized `usage_metadata` (input includes cache reads), else from `llm_output`;
- a tool → `execute_tool {name}`; a retriever → `retrieval {name}`.

Parents are set explicitly from the run tree, never by attaching a context inside a callback
(a start and an end callback can run in different contexts, and an attached context that is
never detached would adopt every later span). Spans from other instrumentations (the openai
client's own `chat` span, manual `tokentrail.tool(...)` spans in a tool body) still nest: the
model call is wrapped where LangChain hands it its run manager, and the child context LangChain
and LangGraph build for every nested run (`_set_config_context`, the same hook LangSmith uses)
gets the run's span as current. Callbacks never raise into the application.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import wrapt
from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tokentrail import semconv as sc
from tokentrail.instrumentation import _api, _content, _llm
from tokentrail.instrumentation._safe import logger, safely

__all__ = ["LangChainInstrumentor"]

_instruments = ("langchain-core >= 0.2",)
_TRACER = "tokentrail.langchain"

# Names the OTel GenAI conventions define that semconv.py does not carry yet.
GEN_AI_RETRIEVAL_QUERY_TEXT = "gen_ai.retrieval.query.text"
GEN_AI_RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"
# Where a run sits in a LangGraph graph; no convention has names for these.
LANGGRAPH_NODE = "langgraph.node"
LANGGRAPH_STEP = "langgraph.step"

_HIDDEN_TAG = "langsmith:hidden"  # LangChain's mark for plumbing runs nobody should see
_GRAPH_STEP_TAG = "graph:step:"  # LangGraph tags each node run of a graph with its step
_CONVERSATION_KEYS = ("conversation_id", "thread_id", "session_id")
_USER_KEYS = ("user_id",)
_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "AIMessageChunk": "assistant",
}
# LangChain's `ls_provider` values → `gen_ai.provider.name` values
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "google_genai": "gcp.gen_ai",
    "google_vertexai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    "ibm": "ibm.watsonx.ai",
}
_PARAMS = {
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens",
    sc.GEN_AI_REQUEST_SEED: "seed",
    sc.GEN_AI_REQUEST_STREAM: "stream",
}

Scope = tuple[str | None, str | None, str | None]  # conversation, user, task
_Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


@dataclass
class _Run:
    span: Span
    kind: str  # "agent", "chain", "llm", "tool" or "retriever"
    name: str
    scope: Scope
    started: float
    first_token: bool = False


# --- reading LangChain objects (never raise: every caller is wrapped in `safely`) ---------------


def _first(mapping: Mapping[str, Any] | None, keys: Iterable[str]) -> Any:
    for key in keys:
        value = (mapping or {}).get(key)
        if value not in (None, ""):
            return value
    return None


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if not name and serialized:
        name = serialized.get("name")
        if not name and isinstance(serialized.get("id"), list) and serialized["id"]:
            name = serialized["id"][-1]
    return str(name or default)


def _provider(metadata: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    raw = metadata.get("ls_provider") or str(params.get("_type") or "").split("-", 1)[0]
    if not raw:
        return None
    value = str(raw).strip().lower()
    return _PROVIDERS.get(value, value)


def _text(content: Any) -> list[dict[str, Any]]:
    """LangChain message content (a string or a list of blocks) as OTel message parts."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, str):
            parts.append({"type": "text", "content": block})
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "text" or "text" in block:
                parts.append({"type": "text", "content": block.get("text", "")})
            elif kind in ("reasoning", "thinking"):
                parts.append(
                    {"type": "reasoning", "content": block.get("reasoning") or block.get("thinking") or ""}
                )
            elif kind:
                parts.append({"type": str(kind)})
    return parts


def _message(message: Any) -> dict[str, Any]:
    """A LangChain message in the OTel GenAI message shape."""
    kind = str(getattr(message, "type", "") or "")
    role = _ROLES.get(kind) or str(getattr(message, "role", "") or kind or "user")
    content = getattr(message, "content", message)
    if role == "tool":
        response = content if isinstance(content, str) else _content.to_json(content)
        return {
            "role": "tool",
            "parts": [
                {
                    "type": "tool_call_response",
                    "id": getattr(message, "tool_call_id", None),
                    "response": response,
                }
            ],
        }
    parts = _text(content)
    for call in getattr(message, "tool_calls", None) or ():
        if isinstance(call, dict):
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": call.get("name"),
                    "arguments": call.get("args"),
                }
            )
    return {"role": role, "parts": parts}


def _finish_reason(generation: Any) -> str | None:
    info = getattr(generation, "generation_info", None) or {}
    metadata = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
    reason = _first(info, ("finish_reason", "stop_reason")) or _first(
        metadata, ("finish_reason", "stop_reason")
    )
    return str(reason) if reason else None


def _as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _usage(generations: Sequence[Any], llm_output: Mapping[str, Any]) -> dict[str, int | None] | None:
    """Token counts in OTel semantics (input includes cache reads and writes)."""
    for generation in generations:
        meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if meta:  # LangChain's standard: input_tokens already includes the cached parts
            details_in = meta.get("input_token_details") or {}
            details_out = meta.get("output_token_details") or {}
            return {
                "input": _as_int(meta.get("input_tokens")),
                "output": _as_int(meta.get("output_tokens")),
                "cache_read": _as_int(details_in.get("cache_read")),
                "cache_write": _as_int(details_in.get("cache_creation")),
                "reasoning": _as_int(details_out.get("reasoning")),
            }
    raw = llm_output.get("token_usage") or llm_output.get("usage")
    if not isinstance(raw, Mapping):
        return None
    if "prompt_tokens" in raw:  # OpenAI style: prompt_tokens includes the cached part
        details_in = raw.get("prompt_tokens_details") or {}
        details_out = raw.get("completion_tokens_details") or {}
        return {
            "input": _as_int(raw.get("prompt_tokens")),
            "output": _as_int(raw.get("completion_tokens")),
            "cache_read": _as_int(details_in.get("cached_tokens")),
            "cache_write": None,
            "reasoning": _as_int(details_out.get("reasoning_tokens")),
        }
    # Anthropic style: input_tokens excludes cache reads and writes
    cache_read = _as_int(raw.get("cache_read_input_tokens"))
    cache_write = _as_int(raw.get("cache_creation_input_tokens"))
    base = _as_int(raw.get("input_tokens"))
    total = None if base is None else base + (cache_read or 0) + (cache_write or 0)
    return {
        "input": total,
        "output": _as_int(raw.get("output_tokens")),
        "cache_read": cache_read,
        "cache_write": cache_write,
        "reasoning": None,
    }


def _is_control_flow(error: BaseException) -> bool:
    """Not failures: LangGraph's interrupts and parent commands, and a stream its reader left early."""
    return isinstance(error, GeneratorExit) or any(
        cls.__name__ == "GraphBubbleUp" for cls in type(error).__mro__
    )


class _StreamSlot:
    """Set while a model's `stream()` takes its first step: the model run started there puts its span
    in the context for that step only (the stream wrapper detaches it), so the client call made in
    the same step nests under it."""

    __slots__ = ("run_id", "token")

    def __init__(self) -> None:
        self.run_id: UUID | None = None
        self.token: object | None = None


_stream_slot: contextvars.ContextVar[_StreamSlot | None] = contextvars.ContextVar(
    "tokentrail_langchain_stream", default=None
)


# --- the handler ------------------------------------------------------------------------------------


class _Handler(BaseCallbackHandler):  # type: ignore[misc]
    """Turns LangChain runs into spans; inert once its instrumentor is uninstrumented."""

    run_inline = True  # called in the caller's context, in order, not from a thread pool

    def __init__(self) -> None:
        super().__init__()
        self.active = True
        self._runs: dict[UUID, _Run] = {}
        self._hidden: dict[UUID, UUID | None] = {}  # a hidden run → its parent, to skip over it

    # -- the run tree

    def _resolve(self, run_id: UUID | None) -> _Run | None:
        """The run's span, or the nearest ancestor's when the run itself is hidden."""
        for _ in range(64):
            if run_id is None:
                return None
            run = self._runs.get(run_id)
            if run is not None:
                return run
            if run_id not in self._hidden:
                return None
            run_id = self._hidden[run_id]
        return None

    def span_for(self, run_id: UUID | None) -> Span | None:
        run = self._resolve(run_id) if self.active else None
        return run.span if run is not None else None

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        span_name: str,
        name: str,
        kind: str,
        span_kind: SpanKind,
        attributes: dict[str, Any],
        metadata: Mapping[str, Any] | None,
    ) -> _Run:
        parent = self._resolve(parent_run_id)
        if parent is not None:
            context: otel_context.Context | None = trace.set_span_in_context(parent.span)
            inherited = parent.scope
        else:  # a root run: under the caller's current span, in its `tokentrail.agent(...)` scope
            context, inherited = None, _api._scope.get()
        scope: Scope = (
            _first(metadata, _CONVERSATION_KEYS) or inherited[0],
            _first(metadata, _USER_KEYS) or inherited[1],
            inherited[2],
        )
        for key, value in (
            (sc.GEN_AI_CONVERSATION_ID, scope[0]),
            (sc.USER_ID, scope[1]),
            (sc.TT_TASK_ID, scope[2]),
        ):
            if value and key not in attributes:
                attributes[key] = str(value)
        attributes = {k: v for k, v in attributes.items() if v is not None}
        span = trace.get_tracer(_TRACER).start_span(
            span_name, context=context, kind=span_kind, attributes=attributes
        )
        run = _Run(span=span, kind=kind, name=name, scope=scope, started=time.monotonic())
        self._runs[run_id] = run
        slot = _stream_slot.get() if kind == "llm" else None
        if slot is not None and slot.run_id is None:
            slot.run_id = run_id
            slot.token = otel_context.attach(trace.set_span_in_context(span))
        return run

    def _end(self, run_id: UUID, error: BaseException | None = None) -> _Run | None:
        self._hidden.pop(run_id, None)
        run = self._runs.pop(run_id, None)
        if run is None:
            return None
        if error is not None and not _is_control_flow(error):
            _fail(run.span, error)
        run.span.end()
        return run

    # -- chains, graphs, agents

    @safely
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.active:
            return
        tags, metadata = tags or [], metadata or {}
        if _HIDDEN_TAG in tags:
            self._hidden[run_id] = parent_run_id
            return
        name = _run_name(serialized, kwargs, "chain")
        node = metadata.get("langgraph_node")
        if any(str(tag).startswith(_GRAPH_STEP_TAG) for tag in tags):
            self._graph_found(parent_run_id)
        graph = metadata.get("ls_integration") == "langgraph" and node is None
        agent = graph or name.endswith("AgentExecutor") or (node is None and "agent" in name.lower())
        attributes: dict[str, Any]
        if agent:
            attributes = {sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: name}
            self._start(
                run_id,
                parent_run_id,
                f"invoke_agent {name}",
                name,
                "agent",
                SpanKind.INTERNAL,
                attributes,
                metadata,
            )
            return
        attributes = {sc.TT_STEP_KIND: sc.STEP_OTHER, sc.TT_STEP_SUBKIND: "chain"}
        if node is not None and node == name:
            attributes[LANGGRAPH_NODE] = str(node)
            step = metadata.get("langgraph_step")
            if isinstance(step, int):
                attributes[LANGGRAPH_STEP] = step
        self._start(
            run_id, parent_run_id, f"chain {name}", name, "chain", SpanKind.INTERNAL, attributes, metadata
        )

    def _graph_found(self, run_id: UUID | None) -> None:
        """A run whose children are graph steps is a graph: a subgraph seen as a plain chain so far."""
        run = self._runs.get(run_id) if run_id is not None else None
        if run is None or run.kind != "chain":
            return
        run.kind = "agent"
        run.span.update_name(f"invoke_agent {run.name}")
        run.span.set_attribute(sc.GEN_AI_OPERATION_NAME, sc.OP_INVOKE_AGENT)
        run.span.set_attribute(sc.GEN_AI_AGENT_NAME, run.name)
        run.span.set_attribute(sc.TT_STEP_KIND, sc.STEP_AGENT)
        run.span.set_attribute(sc.TT_STEP_SUBKIND, "graph")

    @safely
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    @safely
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    # -- model calls

    def _model_start(
        self,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: Mapping[str, Any],
        operation: str,
        content: Any,
    ) -> None:
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = (
            _first(params, ("model", "model_name", "model_id", "deployment_name"))
            or metadata.get("ls_model_name")
            or _first((serialized or {}).get("kwargs"), ("model", "model_name"))
            or ""
        )
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_PROVIDER_NAME: _provider(metadata, params),
            sc.GEN_AI_REQUEST_MODEL: str(model) or None,
        }
        attributes.update(_llm.scalars(params, _PARAMS))
        max_tokens = _first(params, ("max_tokens", "max_completion_tokens", "max_output_tokens"))
        max_tokens = max_tokens if max_tokens is not None else metadata.get("ls_max_tokens")
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
            attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if sc.GEN_AI_REQUEST_TEMPERATURE not in attributes and isinstance(
            metadata.get("ls_temperature"), (int, float)
        ):
            attributes[sc.GEN_AI_REQUEST_TEMPERATURE] = metadata["ls_temperature"]
        stop = params.get("stop") or metadata.get("ls_stop")
        if isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
            attributes[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
        policy = _content.policy()
        if policy.enabled:
            attributes[sc.GEN_AI_INPUT_MESSAGES] = policy.prepare(content)
        span_name = f"{operation} {model}" if model else operation
        self._start(
            run_id, parent_run_id, span_name, str(model), "llm", SpanKind.CLIENT, attributes, metadata
        )

    @safely
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.active:
            return
        content = [_message(m) for m in messages[0]] if _content.policy().enabled and messages else None
        self._model_start(serialized, run_id, parent_run_id, metadata, kwargs, sc.OP_CHAT, content)

    @safely
    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.active:
            return
        content = None
        if _content.policy().enabled and prompts:
            content = [{"role": "user", "parts": [{"type": "text", "content": prompts[0]}]}]
        self._model_start(serialized, run_id, parent_run_id, metadata, kwargs, sc.OP_TEXT_COMPLETION, content)

    @safely
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is not None and not run.first_token:
            run.first_token = True
            run.span.set_attribute(
                sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, round(time.monotonic() - run.started, 6)
            )

    @safely
    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            safely(_record_llm)(run.span, response)
        self._end(run_id)

    @safely
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        response = kwargs.get("response")
        if run is not None and response is not None:  # a failed stream was billed for what it read
            safely(_record_llm)(run.span, response)
        self._end(run_id, error)

    # -- tools and retrievers

    @safely
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.active:
            return
        name = _run_name(serialized, kwargs, "tool")
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_NAME: name,
            sc.GEN_AI_TOOL_TYPE: "function",
            sc.GEN_AI_TOOL_DESCRIPTION: (serialized or {}).get("description") or None,
            sc.GEN_AI_TOOL_CALL_ID: kwargs.get("tool_call_id"),
            sc.GEN_AI_TOOL_CALL_ARGUMENTS: _content.policy().prepare(
                inputs if inputs is not None else input_str
            ),
        }
        self._start(
            run_id,
            parent_run_id,
            f"execute_tool {name}",
            name,
            "tool",
            SpanKind.INTERNAL,
            attributes,
            metadata,
        )

    @safely
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            call_id = getattr(output, "tool_call_id", None)
            if call_id:
                run.span.set_attribute(sc.GEN_AI_TOOL_CALL_ID, str(call_id))
            result = getattr(output, "content", output) if getattr(output, "type", None) == "tool" else output
            text = _content.policy().prepare(result)
            if text is not None:
                run.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, text)
        self._end(run_id)

    @safely
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    @safely
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.active:
            return
        name = _run_name(serialized, kwargs, "retriever")
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_RETRIEVAL,
            sc.GEN_AI_DATA_SOURCE_ID: name,
            GEN_AI_RETRIEVAL_QUERY_TEXT: _content.policy().prepare(query),
        }
        self._start(
            run_id,
            parent_run_id,
            f"retrieval {name}",
            name,
            "retriever",
            SpanKind.CLIENT,
            attributes,
            metadata,
        )

    @safely
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is not None and _content.policy().enabled:
            docs = [
                {"id": getattr(d, "id", None), "content": getattr(d, "page_content", None)} for d in documents
            ]
            text = _content.policy().prepare(docs)
            if text is not None:
                run.span.set_attribute(GEN_AI_RETRIEVAL_DOCUMENTS, text)
        self._end(run_id)

    @safely
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)


def _fail(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)


def _record_llm(span: Span, response: Any) -> None:
    generations: list[Any] = list((getattr(response, "generations", None) or [[]])[0] or [])
    llm_output: Mapping[str, Any] = getattr(response, "llm_output", None) or {}
    usage = _usage(generations, llm_output)
    if usage is not None and usage["input"] is not None and usage["output"] is not None:
        _llm.set_usage(
            span,
            input_tokens=usage["input"],
            output_tokens=usage["output"],
            cache_read=usage["cache_read"],
            cache_write=usage["cache_write"],
            reasoning=usage["reasoning"],
        )
    metadata: Mapping[str, Any] = next(
        (m for g in generations if (m := getattr(getattr(g, "message", None), "response_metadata", None))), {}
    )
    model = _first(metadata, ("model_name", "model")) or _first(llm_output, ("model_name", "model"))
    ident = _first(metadata, ("id",)) or _first(llm_output, ("id",))
    finish = [reason for g in generations if (reason := _finish_reason(g))]
    _llm.set_response(span, model=model, ident=ident, finish=finish)
    if _content.policy().enabled:
        output = []
        for generation, reason in zip(generations, [_finish_reason(g) for g in generations], strict=True):
            message = getattr(generation, "message", None)
            item = (
                _message(message)
                if message is not None
                else {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": getattr(generation, "text", "")}],
                }
            )
            if reason:
                item["finish_reason"] = reason
            output.append(item)
        _llm.set_content(span, sc.GEN_AI_OUTPUT_MESSAGES, output)


# --- context for spans that are not ours ----------------------------------------------------------


def _run_manager_id(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int, key: str) -> UUID | None:
    manager = kwargs.get(key, args[position] if len(args) > position else None)
    if isinstance(manager, list):  # `_generate_helper` takes one manager per prompt
        manager = manager[0] if len(manager) == 1 else None
    run_id = getattr(manager, "run_id", None)
    return run_id if isinstance(run_id, UUID) else None


def _model_wrappers(handler: _Handler, position: int, key: str) -> tuple[_Wrapper, _Wrapper]:
    """Make the model run's span current while the model calls its client, so the client's span nests."""

    def context(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object | None:
        try:
            span = handler.span_for(_run_manager_id(args, kwargs, position, key))
            return otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        except Exception:
            logger.debug("tokentrail: langchain context lookup failed", exc_info=True)
            return None

    def sync(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        token = context(args, kwargs)
        try:
            return wrapped(*args, **kwargs)
        finally:
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]

    async def async_(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        token = context(args, kwargs)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]

    return sync, async_


class _StreamStep:
    """One step of a model's stream: the run's span is current during it, and only during it."""

    def __init__(self, handler: _Handler, slot: _StreamSlot) -> None:
        self.handler, self.slot = handler, slot
        self.marker: contextvars.Token[_StreamSlot | None] | None = None
        self.token: object | None = None

    def __enter__(self) -> None:
        try:
            if self.slot.run_id is None:  # the first step: the run starts in it, and takes the slot
                self.marker = _stream_slot.set(self.slot)
            elif (span := self.handler.span_for(self.slot.run_id)) is not None:
                self.token = otel_context.attach(trace.set_span_in_context(span))
        except Exception:
            logger.debug("tokentrail: langchain stream context failed", exc_info=True)

    def __exit__(self, *exc: object) -> None:
        try:
            for token in (self.slot.token, self.token):
                if token is not None:
                    otel_context.detach(token)  # type: ignore[arg-type]
            self.slot.token = self.token = None
            if self.marker is not None:
                _stream_slot.reset(self.marker)
                self.marker = None
        except Exception:
            logger.debug("tokentrail: langchain stream context failed", exc_info=True)


def _stream_wrappers(handler: _Handler) -> tuple[_Wrapper, _Wrapper]:
    """Give each step of a model's own `stream()`/`astream()` its run's span as the current span.

    There LangChain calls the provider without handing over the run manager, so the model-call
    wrapper above cannot see the run; without this the client's span would be a second leaf.
    """

    def traced(stream: Iterator[Any]) -> Iterator[Any]:
        slot = _StreamSlot()
        try:
            while True:
                with _StreamStep(handler, slot):
                    try:
                        item = next(stream)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    async def atraced(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        slot = _StreamSlot()
        try:
            while True:
                with _StreamStep(handler, slot):
                    try:
                        item = await anext(stream)
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def sync(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        stream = wrapped(*args, **kwargs)
        return traced(stream) if handler.active and isinstance(stream, Iterator) else stream

    def async_(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        stream = wrapped(*args, **kwargs)
        return atraced(stream) if handler.active and isinstance(stream, AsyncIterator) else stream

    return sync, async_


def _config_context_wrapper(handler: _Handler) -> _Wrapper:
    """Runs inside the fresh context LangChain copies for a child run: make the parent run's span current.

    That context is thrown away when the child finishes, so nothing is detached.
    """

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            config = args[0] if args else kwargs.get("config")
            callbacks = config.get("callbacks") if isinstance(config, Mapping) else None
            span = handler.span_for(getattr(callbacks, "parent_run_id", None))
            if span is not None:
                otel_context.attach(trace.set_span_in_context(span))
        except Exception:
            logger.debug("tokentrail: langchain context lookup failed", exc_info=True)
        return result

    return wrapper


def _manager_init_wrapper(handler: _Handler) -> _Wrapper:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        wrapped(*args, **kwargs)
        try:
            if handler.active and handler not in instance.inheritable_handlers:
                instance.add_handler(handler, True)
        except Exception:
            logger.debug("tokentrail: adding the langchain handler failed", exc_info=True)

    return wrapper


# (module, attribute) pairs wrapped for context; any that a version lacks is skipped
_MODEL_TARGETS = (
    (
        "langchain_core.language_models.chat_models",
        "BaseChatModel._generate_with_cache",
        "BaseChatModel._agenerate_with_cache",
        2,
        "run_manager",
    ),
    (
        "langchain_core.language_models.llms",
        "BaseLLM._generate_helper",
        "BaseLLM._agenerate_helper",
        2,
        "run_managers",
    ),
)
_STREAM_TARGETS = (
    ("langchain_core.language_models.chat_models", "BaseChatModel.stream", "BaseChatModel.astream"),
    ("langchain_core.language_models.llms", "BaseLLM.stream", "BaseLLM.astream"),
)
_CONFIG_TARGETS = (
    ("langchain_core.runnables.config", "_set_config_context"),
    ("langgraph._internal._runnable", "_set_config_context"),
)


def _wrap(module: str, name: str, wrapper: _Wrapper, done: list[tuple[str, str]]) -> None:
    try:
        wrapt.wrap_function_wrapper(module, name, wrapper)
        done.append((module, name))
    except (ImportError, AttributeError):
        logger.debug("tokentrail: %s.%s not found; not wrapped", module, name)


class LangChainInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds one handler to every LangChain callback manager; `uninstrument` makes it inert."""

    _handler: _Handler | None = None
    _wrapped: tuple[tuple[str, str], ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        handler = _Handler()
        done: list[tuple[str, str]] = []
        _wrap(
            "langchain_core.callbacks.base",
            "BaseCallbackManager.__init__",
            _manager_init_wrapper(handler),
            done,
        )
        for module, sync_name, async_name, position, key in _MODEL_TARGETS:
            sync, async_ = _model_wrappers(handler, position, key)
            _wrap(module, sync_name, sync, done)
            _wrap(module, async_name, async_, done)
        for module, sync_name, async_name in _STREAM_TARGETS:
            sync, async_ = _stream_wrappers(handler)
            _wrap(module, sync_name, sync, done)
            _wrap(module, async_name, async_, done)
        for module, name in _CONFIG_TARGETS:
            _wrap(module, name, _config_context_wrapper(handler), done)
        self._handler, self._wrapped = handler, tuple(done)

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        if self._handler is not None:
            self._handler.active = False  # managers that still hold it get a handler that does nothing
        for module, name in self._wrapped:
            try:
                owner: Any = importlib.import_module(module)
                *path, attribute = name.split(".")
                for part in path:
                    owner = getattr(owner, part)
                unwrap(owner, attribute)
            except Exception:
                logger.debug("tokentrail: unwrapping %s.%s failed", module, name, exc_info=True)
        self._handler, self._wrapped = None, ()
