"""The callback handler: each LangChain run it is told about becomes a span.

- a LangGraph graph (or a legacy agent executor, or a run named like an agent) → `invoke_agent {name}`;
  a chain first seen as a plain chain whose children turn out to be graph steps is a subgraph, and
  becomes one then;
- any other chain, including graph nodes → `chain {name}` (INTERNAL, step kind other/chain), with
  the node and step of the graph it runs in;
- a chat model → `chat {model}`, a completion LLM → `text_completion {model}` (CLIENT, through the
  shared model-call helper), with the time to the first streamed token;
- a tool → `execute_tool {name}`; a retriever → `retrieval {name}` (CLIENT).

Every callback is wrapped in `safely`: a failure of ours is logged, never raised into LangChain.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry.trace import Span

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content
from tokentrail.instrumentation._invocation import text_part
from tokentrail.instrumentation._safe import safely
from tokentrail.instrumentation.langchain import _model
from tokentrail.instrumentation.langchain._messages import message
from tokentrail.instrumentation.langchain._runs import Runs, span_name

__all__ = ["Handler"]

# Names the OTel GenAI conventions define that semconv.py does not carry yet.
GEN_AI_RETRIEVAL_QUERY_TEXT = "gen_ai.retrieval.query.text"
GEN_AI_RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"
# Where a run sits in a LangGraph graph; no convention has names for these.
LANGGRAPH_NODE = "langgraph.node"
LANGGRAPH_STEP = "langgraph.step"

_HIDDEN_TAG = "langsmith:hidden"  # LangChain's mark for plumbing runs nobody should see
_GRAPH_STEP_TAG = "graph:step:"  # LangGraph tags each node run of a graph with its step


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if not name and serialized:
        name = serialized.get("name")
        if not name and isinstance(serialized.get("id"), list) and serialized["id"]:
            name = serialized["id"][-1]
    return str(name or default)


def _chain(name: str, metadata: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run kind and attributes of a chain run: an agent, or a plain chain (a graph node)."""
    node = metadata.get("langgraph_node")
    graph = metadata.get("ls_integration") == "langgraph" and node is None
    if graph or name.endswith("AgentExecutor") or (node is None and "agent" in name.lower()):
        agent = {sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: name}
        return "agent", agent
    attributes: dict[str, Any] = {sc.TT_STEP_KIND: sc.STEP_OTHER, sc.TT_STEP_SUBKIND: "chain"}
    if node is not None and node == name:
        attributes[LANGGRAPH_NODE] = str(node)
        step = metadata.get("langgraph_step")
        if isinstance(step, int):
            attributes[LANGGRAPH_STEP] = step
    return "chain", attributes


class Handler(BaseCallbackHandler):  # type: ignore[misc]
    """Turns LangChain runs into spans; inert once its instrumentor is uninstrumented."""

    run_inline = True  # called in the caller's context, in order, not from a thread pool

    def __init__(self) -> None:
        super().__init__()
        self.active = True
        self.runs = Runs()

    def span_for(self, run_id: UUID | None) -> Span | None:
        """The span of a run (or of its nearest visible ancestor), for spans that are not ours."""
        run = self.runs.resolve(run_id) if self.active else None
        return run.span if run is not None else None

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
            self.runs.hide(run_id, parent_run_id)
            return
        name = _run_name(serialized, kwargs, "chain")
        if any(str(tag).startswith(_GRAPH_STEP_TAG) for tag in tags):
            self._graph_found(parent_run_id)
        kind, attributes = _chain(name, metadata)
        self.runs.start(run_id, parent_run_id, metadata, kind, name, attributes)

    def _graph_found(self, run_id: UUID | None) -> None:
        """A run whose children are graph steps is a graph: a subgraph seen as a plain chain so far."""
        run = self.runs.get(run_id)
        if run is None or run.kind != "chain":
            return
        run.kind = "agent"
        run.span.update_name(span_name("agent", run.name))
        run.span.set_attribute(sc.GEN_AI_OPERATION_NAME, sc.OP_INVOKE_AGENT)
        run.span.set_attribute(sc.GEN_AI_AGENT_NAME, run.name)
        run.span.set_attribute(sc.TT_STEP_KIND, sc.STEP_AGENT)
        run.span.set_attribute(sc.TT_STEP_SUBKIND, "graph")

    @safely
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs.end(run_id)

    @safely
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs.end(run_id, error)

    # -- model calls

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
        content = [message(m) for m in messages[0]] if _content.capturing() and messages else None
        request = _model.request(serialized, metadata or {}, kwargs, sc.OP_CHAT, content)
        self.runs.start_model(run_id, parent_run_id, metadata, request)

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
        if _content.capturing() and prompts:
            content = [{"role": "user", "parts": [text_part(prompts[0])]}]
        request = _model.request(serialized, metadata or {}, kwargs, sc.OP_TEXT_COMPLETION, content)
        self.runs.start_model(run_id, parent_run_id, metadata, request)

    @safely
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self.runs.get(run_id)
        if run is not None and not run.first_token:
            run.first_token = True
            run.span.set_attribute(
                sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, round(time.monotonic() - run.started, 6)
            )

    @safely
    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            safely(_model.record_result)(run.span, response)
        self.runs.end(run_id)

    @safely
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self.runs.get(run_id)
        response = kwargs.get("response")
        if run is not None and response is not None:  # a failed stream was billed for what it read
            safely(_model.record_result)(run.span, response)
        self.runs.end(run_id, error)

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
            sc.GEN_AI_TOOL_CALL_ARGUMENTS: _content.prepare(inputs if inputs is not None else input_str),
        }
        self.runs.start(run_id, parent_run_id, metadata, "tool", name, attributes)

    @safely
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            call_id = getattr(output, "tool_call_id", None)
            if call_id:
                run.span.set_attribute(sc.GEN_AI_TOOL_CALL_ID, str(call_id))
            result = getattr(output, "content", output) if getattr(output, "type", None) == "tool" else output
            _content.record(run.span, sc.GEN_AI_TOOL_CALL_RESULT, result)
        self.runs.end(run_id)

    @safely
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs.end(run_id, error)

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
            GEN_AI_RETRIEVAL_QUERY_TEXT: _content.prepare(query),
        }
        self.runs.start(run_id, parent_run_id, metadata, "retriever", name, attributes)

    @safely
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        run = self.runs.get(run_id)
        if run is not None and _content.capturing():
            docs = [
                {"id": getattr(d, "id", None), "content": getattr(d, "page_content", None)} for d in documents
            ]
            _content.record(run.span, GEN_AI_RETRIEVAL_DOCUMENTS, docs)
        self.runs.end(run_id)

    @safely
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs.end(run_id, error)
