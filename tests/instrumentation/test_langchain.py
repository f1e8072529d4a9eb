"""The langchain instrumentor with real LangChain, LangGraph and langchain-openai against the local API stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import openai
import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import tokentrail
from tokentrail.demo.llm_server import LLMServer
from tokentrail.instrumentation import _content
from tokentrail.instrumentation.langchain import LangChainInstrumentor
from tokentrail.instrumentation.openai import OpenAIInstrumentor

# tool calls the stand-in answers with report this usage, so the figures below are exact
USAGE = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}


@pytest.fixture
def server(spans) -> Iterator[LLMServer]:
    LangChainInstrumentor().instrument()
    srv = LLMServer(reply="It shipped.")
    with srv:
        yield srv
    LangChainInstrumentor().uninstrument()


def _model(server: LLMServer, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", base_url=f"{server.base_url}/v1", api_key="t", **kw)  # type: ignore[arg-type]


def _by_name(spans) -> dict[str, Any]:
    return {s.name: s for s in spans.get_finished_spans()}


def _parent_of(span) -> int | None:
    return span.parent.span_id if span.parent is not None else None


inside_tool: list[int] = []


@tool
def get_order_status(order_id: str) -> str:
    """The shipping status of an order."""
    inside_tool.append(trace.get_current_span().get_span_context().span_id)
    return f"order {order_id}: shipped"


@tool
def broken_lookup(order_id: str) -> str:
    """Always fails."""
    raise ValueError(f"no such order {order_id}")


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _graph(model: ChatOpenAI) -> Any:
    bound = model.bind_tools([get_order_status])

    def call_model(state: State) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(State)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode([get_order_status]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile(name="support")


def test_chain_nests_chat_span_with_usage(spans, server):
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{question}")]) | _model(
        server
    )
    with tokentrail.agent("support", conversation_id="conv-1"):
        reply = chain.invoke({"question": "Where is order 42?"})
    s = _by_name(spans)
    root, sequence, chat = s["invoke_agent support"], s["chain RunnableSequence"], s["chat gpt-4o-mini"]
    assert _parent_of(sequence) == root.context.span_id
    assert _parent_of(s["chain ChatPromptTemplate"]) == sequence.context.span_id
    assert _parent_of(chat) == sequence.context.span_id and chat.kind == SpanKind.CLIENT
    assert sequence.kind == SpanKind.INTERNAL
    assert sequence.attributes["tokentrail.step.kind"] == "other"
    assert (
        sequence.attributes["gen_ai.conversation.id"] == chat.attributes["gen_ai.conversation.id"] == "conv-1"
    )
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert chat.attributes["gen_ai.response.id"].startswith("chatcmpl-")
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    usage = reply.usage_metadata
    assert usage is not None
    assert chat.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"] > 0
    assert chat.attributes["gen_ai.usage.cache_read.input_tokens"] == 0
    assert chat.attributes["gen_ai.usage.reasoning.output_tokens"] == 0
    assert "gen_ai.input.messages" not in chat.attributes and "gen_ai.output.messages" not in chat.attributes


def test_openai_client_span_nests_under_the_langchain_chat_span(spans, server):
    OpenAIInstrumentor().instrument()
    try:
        _model(server).invoke("hello")
    finally:
        OpenAIInstrumentor().uninstrument()
    outer, inner = sorted(
        (s for s in spans.get_finished_spans() if s.name.startswith("chat ")), key=lambda s: s.start_time
    )
    assert outer.instrumentation_scope.name == "tokentrail.langchain"
    assert inner.instrumentation_scope.name == "tokentrail.openai"
    assert _parent_of(inner) == outer.context.span_id
    # the leaf (the client's span) carries the same usage: it is the one the collector bills
    assert inner.attributes["gen_ai.usage.input_tokens"] == outer.attributes["gen_ai.usage.input_tokens"] > 0
    assert inner.attributes["gen_ai.usage.output_tokens"] == outer.attributes["gen_ai.usage.output_tokens"]


def test_langgraph_graph_is_an_agent_with_node_and_tool_children(spans, server):
    server.tool_calls.append(("get_order_status", {"order_id": "42"}, USAGE))
    inside_tool.clear()
    result = _graph(_model(server)).invoke(
        {"messages": [HumanMessage("Where is order 42?")]}, config={"configurable": {"thread_id": "thread-7"}}
    )
    assert result["messages"][-1].content == "It shipped."
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "invoke_agent support"]
    assert root.parent is None
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "support"
    assert root.attributes["gen_ai.conversation.id"] == "thread-7"
    nodes = [s for s in finished if s.name.startswith("chain ") and _parent_of(s) == root.context.span_id]
    assert [(n.name, n.attributes["langgraph.step"]) for n in sorted(nodes, key=lambda n: n.start_time)] == [
        ("chain model", 1),
        ("chain tools", 2),
        ("chain model", 3),
    ]
    chats = sorted((s for s in finished if s.name == "chat gpt-4o-mini"), key=lambda s: s.start_time)
    assert [_parent_of(c) for c in chats] == [nodes[0].context.span_id, nodes[2].context.span_id]
    assert chats[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert chats[0].attributes["gen_ai.usage.input_tokens"] == 40
    (tool_span,) = [s for s in finished if s.name == "execute_tool get_order_status"]
    tools_node = next(n for n in nodes if n.name == "chain tools")
    assert _parent_of(tool_span) == tools_node.context.span_id
    assert tool_span.attributes["gen_ai.tool.name"] == "get_order_status"
    assert tool_span.attributes["gen_ai.tool.call.id"].startswith("call_")
    assert tool_span.attributes["gen_ai.tool.description"] == "The shipping status of an order."
    assert "gen_ai.tool.call.arguments" not in tool_span.attributes
    assert "gen_ai.tool.call.result" not in tool_span.attributes
    # code inside the tool runs with the tool's span current, so spans it starts nest under it
    assert inside_tool == [tool_span.context.span_id]
    assert all(s.context.trace_id == root.context.trace_id for s in finished)


def test_async_graph_with_content_capture(spans, server):
    _content.configure(enabled=True)
    server.tool_calls.append(("get_order_status", {"order_id": "7"}, USAGE))
    graph = _graph(_model(server))
    asyncio.run(graph.ainvoke({"messages": [HumanMessage("Status of 7?")]}))
    s = _by_name(spans)
    tool_span = s["execute_tool get_order_status"]
    assert json.loads(tool_span.attributes["gen_ai.tool.call.arguments"]) == {"order_id": "7"}
    assert tool_span.attributes["gen_ai.tool.call.result"] == "order 7: shipped"
    chats = sorted(
        (x for x in spans.get_finished_spans() if x.name == "chat gpt-4o-mini"), key=lambda x: x.start_time
    )
    assert json.loads(chats[0].attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Status of 7?"}]}
    ]
    first_out = json.loads(chats[0].attributes["gen_ai.output.messages"])[0]
    assert first_out["finish_reason"] == "tool_calls"
    assert first_out["parts"][0]["type"] == "tool_call" and first_out["parts"][0]["arguments"] == {
        "order_id": "7"
    }
    second_in = json.loads(chats[1].attributes["gen_ai.input.messages"])
    assert [m["role"] for m in second_in] == ["user", "assistant", "tool"]
    assert second_in[2]["parts"][0]["response"] == "order 7: shipped"
    assert json.loads(chats[1].attributes["gen_ai.output.messages"])[0]["parts"] == [
        {"type": "text", "content": "It shipped."}
    ]
    assert s["invoke_agent support"].parent is None


def test_streaming_chat_span_ends_with_the_stream_and_wraps_the_client_span(spans, server):
    OpenAIInstrumentor().instrument()
    try:
        text = "".join(str(chunk.content) for chunk in _model(server, stream_usage=True).stream("hi"))

        async def consume() -> None:
            async for _chunk in _model(server, stream_usage=True).astream("hi"):
                break  # the reader leaves early: not an error

        asyncio.run(consume())
    finally:
        OpenAIInstrumentor().uninstrument()
    assert text.strip() == "It shipped."
    ours = sorted(
        (s for s in spans.get_finished_spans() if s.instrumentation_scope.name == "tokentrail.langchain"),
        key=lambda s: s.start_time,
    )
    clients = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == "tokentrail.openai"]
    assert [s.name for s in ours] == ["chat gpt-4o-mini"] * 2
    assert sorted(_parent_of(c) or 0 for c in clients) == sorted(s.context.span_id for s in ours)
    assert ours[0].attributes["gen_ai.usage.output_tokens"] > 0
    assert ours[0].attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert ours[1].status.status_code == StatusCode.UNSET


def test_model_error_is_recorded_and_passes_through(spans, server):
    server.fail_next(500, times=3)
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | _model(server, max_retries=0)
    with pytest.raises(openai.InternalServerError) as raised:
        chain.invoke({"q": "x"})
    s = _by_name(spans)
    chat, sequence = s["chat gpt-4o-mini"], s["chain RunnableSequence"]
    for span in (chat, sequence):
        assert span.status.status_code == StatusCode.ERROR
        # langchain-openai re-raises as its own subclass of the openai error: that is the type recorded
        assert span.attributes["error.type"] == type(raised.value).__qualname__
    assert _parent_of(chat) == sequence.context.span_id


def test_tool_error_is_recorded_and_the_same_exception_passes(spans, server):
    with pytest.raises(ValueError, match="no such order 9"):
        broken_lookup.invoke({"order_id": "9"})
    (span,) = spans.get_finished_spans()
    assert span.name == "execute_tool broken_lookup"
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"


class Shelf(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content=f"about {query}", id="doc-1")]


def test_retriever_span(spans, server):
    _content.configure(enabled=True)
    Shelf().invoke("returns")
    (span,) = spans.get_finished_spans()
    assert span.name == "retrieval Shelf" and span.kind == SpanKind.CLIENT
    assert span.attributes["gen_ai.operation.name"] == "retrieval"
    assert span.attributes["gen_ai.data_source.id"] == "Shelf"
    assert span.attributes["gen_ai.retrieval.query.text"] == "returns"
    assert json.loads(span.attributes["gen_ai.retrieval.documents"]) == [
        {"id": "doc-1", "content": "about returns"}
    ]


def test_uninstrument_stops_spans_and_dependencies_are_declared(spans, server):
    assert LangChainInstrumentor().instrumentation_dependencies() == ("langchain-core >= 0.2",)
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | _model(server)
    LangChainInstrumentor().uninstrument()
    chain.invoke({"q": "x"})
    assert spans.get_finished_spans() == ()
    LangChainInstrumentor().instrument()
    chain.invoke({"q": "x"})
    assert "chat gpt-4o-mini" in _by_name(spans)


class Counter(TypedDict):
    x: int


def test_subgraph_is_a_nested_agent(spans, server):
    inner = StateGraph(Counter)
    inner.add_node("inc", lambda s: {"x": s["x"] + 1})
    inner.add_edge(START, "inc")
    outer = StateGraph(Counter)
    outer.add_node("research", inner.compile(name="researcher"))
    outer.add_edge(START, "research")
    assert outer.compile(name="boss").invoke({"x": 1}) == {"x": 2}
    s = _by_name(spans)
    boss, node, researcher = s["invoke_agent boss"], s["chain research"], s["invoke_agent researcher"]
    assert _parent_of(node) == boss.context.span_id
    assert _parent_of(researcher) == node.context.span_id
    assert researcher.attributes["gen_ai.agent.name"] == "researcher"
    assert researcher.attributes["tokentrail.step.kind"] == "agent"
    assert _parent_of(s["chain inc"]) == researcher.context.span_id
