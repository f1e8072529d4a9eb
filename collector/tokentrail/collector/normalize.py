"""Map a span from any emitter's convention onto Tokentrail's normalized columns.

Pure and never raising: bad input degrades to empty fields. Each column lists the keys it is read
from, current OTel names first, then older and third-party ones; the first non-empty key wins. This runs once per span on the ingest hot path, so
key lists are tuples looked up directly in the attribute dict, and flattened-message scans run
only when a marker key says such keys exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokentrail import providers
from tokentrail import semconv as sc
from tokentrail.collector import _messages

__all__ = ["Normalized", "normalize"]

logger = logging.getLogger("tokentrail.collector")


@dataclass(slots=True)
class Normalized:
    convention: str = ""
    step_kind: str = sc.STEP_OTHER
    step_subkind: str = ""
    operation: str = ""
    agent_name: str = ""
    workflow_name: str = ""
    request_model: str = ""
    response_model: str = ""
    provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_reported: bool = False
    #: the span carries an attribute for cached input tokens (0 included): a cache miss can be told
    cache_reported: bool = False
    billable: bool = False
    reported_cost: float | None = None
    tool_name: str = ""
    tool_call_id: str = ""
    tool_arguments: str = ""
    tool_result: str = ""
    tool_args_hash: int = 0
    input_hash: int = 0
    #: hash of the system instructions (same hash: the same kind of step)
    system_hash: int = 0
    #: hashes (tool name + canonical arguments) of the tool calls the model asked for in its output
    requested_tools: list[int] = field(default_factory=list)
    conversation_id: str = ""
    user_id: str = ""
    response_id: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    error_type: str = ""
    retry_attempt: int = 0
    retry_reason: str = ""
    input_messages: str = ""
    output_messages: str = ""
    system_instructions: str = ""


# --- step kind -------------------------------------------------------------------------------

_OPERATIONS = {
    "chat": (sc.STEP_LLM, ""),
    "generate_content": (sc.STEP_LLM, ""),
    "text_completion": (sc.STEP_LLM, ""),
    "completion": (sc.STEP_LLM, ""),
    "generate": (sc.STEP_LLM, ""),
    "fetch_response": (sc.STEP_OTHER, "fetch_response"),
    "response": (sc.STEP_LLM, ""),
    "llm_call": (sc.STEP_LLM, ""),
    "llm_request": (sc.STEP_LLM, ""),
    "transcription": (sc.STEP_LLM, "transcription"),
    "speech_generation": (sc.STEP_LLM, "speech"),
    "embeddings": (sc.STEP_EMBEDDING, ""),
    "embedding": (sc.STEP_EMBEDDING, ""),
    "retrieval": (sc.STEP_RETRIEVAL, ""),
    "vector_db_retrieve": (sc.STEP_RETRIEVAL, ""),
    "execute_tool": (sc.STEP_TOOL, ""),
    "tool_call": (sc.STEP_TOOL, ""),
    "invoke_agent": (sc.STEP_AGENT, ""),
    "create_agent": (sc.STEP_AGENT, "create"),
    "invoke_workflow": (sc.STEP_AGENT, "workflow"),
    "execute_task": (sc.STEP_OTHER, "task"),
    "plan": (sc.STEP_PLAN, ""),
    "guardrail_check": (sc.STEP_OTHER, "guardrail"),
    "agent_handoff": (sc.STEP_OTHER, "handoff"),
}
_OPENINFERENCE = {
    "LLM": (sc.STEP_LLM, ""),
    "EMBEDDING": (sc.STEP_EMBEDDING, ""),
    "RETRIEVER": (sc.STEP_RETRIEVAL, ""),
    "RERANKER": (sc.STEP_RETRIEVAL, "reranker"),
    "TOOL": (sc.STEP_TOOL, ""),
    "AGENT": (sc.STEP_AGENT, ""),
    "CHAIN": (sc.STEP_OTHER, "chain"),
    "PROMPT": (sc.STEP_OTHER, "prompt"),
    "GUARDRAIL": (sc.STEP_OTHER, "guardrail"),
    "EVALUATOR": (sc.STEP_OTHER, "evaluator"),
}
_TRACELOOP = {
    "workflow": (sc.STEP_AGENT, "workflow"),
    "agent": (sc.STEP_AGENT, ""),
    "tool": (sc.STEP_TOOL, ""),
    "task": (sc.STEP_OTHER, "task"),
}
_LLM_REQUEST_TYPE = {
    "chat": (sc.STEP_LLM, ""),
    "completion": (sc.STEP_LLM, ""),
    "embedding": (sc.STEP_EMBEDDING, ""),
    "rerank": (sc.STEP_RETRIEVAL, "reranker"),
}
_SPAN_NAMES = {  # emitters that say what a span is only through its name
    "claude_code.llm_request": (sc.STEP_LLM, ""),
    "claude_code.tool": (sc.STEP_TOOL, ""),
    "claude_code.tool.execution": (sc.STEP_OTHER, "tool_execution"),
    "claude_code.tool.blocked_on_user": (sc.STEP_OTHER, "blocked_on_user"),
    "claude_code.interaction": (sc.STEP_AGENT, "turn"),
    "claude_code.hook": (sc.STEP_OTHER, "hook"),
    # coding agents' compactions, as the session builder writes them from their events
    "claude_code.compaction": (sc.STEP_OTHER, "compaction"),
    "gemini_cli.chat_compression": (sc.STEP_OTHER, "compaction"),
    "agent run": (sc.STEP_AGENT, ""),
    "running tool": (sc.STEP_TOOL, ""),
}

# --- keys, first non-empty wins ----------------------------------------------------------------

_REQUEST_MODEL = (
    sc.GEN_AI_REQUEST_MODEL,
    "llm.request.model_name",
    "llm.model_name",
    "embedding.model_name",
    "model",
)
_RESPONSE_MODEL = (sc.GEN_AI_RESPONSE_MODEL, "llm.response.model_name")
_PROVIDER = (sc.GEN_AI_PROVIDER_NAME, "llm.system", "llm.provider", sc.GEN_AI_SYSTEM)
_INPUT = (
    sc.GEN_AI_USAGE_INPUT_TOKENS,
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "input_token_count",
)
_OUTPUT = (
    sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "output_token_count",
)
_CACHE_READ = (
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.details.cache_read_tokens",
    "cached_content_token_count",
    "cached_token_count",
)
_CACHE_WRITE = (
    sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.cache_write_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.details.cache_write_tokens",
    "gen_ai.usage.details.cache_creation_input_tokens",
    "cache_write_token_count",
)
_REASONING = (
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "gen_ai.usage.details.reasoning_tokens",
    "thoughts_token_count",
    "reasoning_token_count",
    "codex.usage.reasoning_output_tokens",
)
_COST = ("llm.cost.total", "gen_ai.usage.cost", "operation.cost", "cost_usd")
_TOOL_NAME = (sc.GEN_AI_TOOL_NAME, "tool.name", "tool_name", "function_name")
_TOOL_CALL_ID = (sc.GEN_AI_TOOL_CALL_ID, "gen_ai.tool.call_id", "tool.id", "tool_use_id", "call_id")
_TOOL_ARGS = (
    sc.GEN_AI_TOOL_CALL_ARGUMENTS,
    "gen_ai.tool.args",
    "tool.arguments",
    "tool.args",
    "tool_input",
    "tool_parameters",
    "function_args",
    "arguments",
)
_TOOL_RESULT = (
    sc.GEN_AI_TOOL_CALL_RESULT,
    "anthropic.tool_result.content",
    "tool.result",
    "tool.output",
    "output",
)
_HTTP_METHOD = (sc.HTTP_REQUEST_METHOD, "http.method")
_HTTP_STATUS = (sc.HTTP_RESPONSE_STATUS_CODE, "http.status_code")
_AGENT = (sc.GEN_AI_AGENT_NAME, "agent.name", "agent_name")
_WORKFLOW = (sc.GEN_AI_WORKFLOW_NAME, "traceloop.workflow.name", "workflow.name")
_CONVERSATION = (
    sc.GEN_AI_CONVERSATION_ID,
    sc.SESSION_ID,
    "traceloop.association.properties.session_id",
    "traceloop.association.properties.thread_id",
    "conversation.id",
    "session_id",
)
_USER = (sc.USER_ID, sc.ENDUSER_ID, "traceloop.association.properties.user_id", "user.email")
# Coding agents' `user.id` is an anonymous install id: the developer is the account they name
_DEVELOPER = ("user.email", "user.account_uuid", "user.account_id", sc.USER_ID, "installation.id")
_CODING_AGENTS = frozenset({"claude_code", "codex", "gemini_cli"})
_RESPONSE_ID = (sc.GEN_AI_RESPONSE_ID, "request_id", "llm.response.id")
_FINISH = (
    sc.GEN_AI_RESPONSE_FINISH_REASONS,
    "gen_ai.response.finish_reason",
    "llm.response.finish_reason",
    "llm.finish_reason",
    "anthropic.message.stop_reason",
    "stop_reason",
    "finish_reasons",
)
_RETRY = (sc.TT_RETRY_ATTEMPT, "attempt")
_PYDANTIC_AI = (
    "logfire.msg",
    "pydantic_ai.all_messages",
    "gen_ai.aggregated_usage.input_tokens",
    "model_request_parameters",
    "pydantic_ai.model_request.attempt",
)

_CLAUDE_CODE_SERVICES = frozenset({"claude-code", "claude_code"})
_CODEX_SERVICES = frozenset({"codex_cli_rs", "codex-cli", "codex_exec", "codex"})


def _first(attrs: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in attrs:  # most keys are absent: a membership test is the cheapest way to say so
            value = attrs[key]
            if value is not None and value != "":
                return value
    return None


def _str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


#: more tokens than any model call can have (the largest context windows hold millions): a count
#: beyond it is garbage, and would overflow the column once cached tokens are added to it
_MAX_COUNT = 1 << 40


def _count(value: Any) -> int:
    """A token count from int, float or numeric text; anything else (negative, absurd) is 0."""
    if type(value) is int:  # the usual case first (a bool is not one: its type is bool)
        return value if 0 < value < _MAX_COUNT else 0
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value if 0 < value < _MAX_COUNT else 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if 0 < number < _MAX_COUNT else 0


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


def _strings(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        if value.startswith("["):
            try:
                parsed = json.loads(value)
                return [str(v) for v in parsed] if isinstance(parsed, list) else [value]
            except ValueError:
                return [value]
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _hash(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


_sorted_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode


def _canonical(text: str) -> str:
    """JSON with sorted keys, so equal structures hash alike whatever their key order."""
    try:
        return _sorted_json(json.loads(text))
    except (ValueError, TypeError):
        return text


def _convention(attrs: Mapping[str, Any], resource: Mapping[str, Any], name: str) -> str:
    service = _str(resource.get(sc.SERVICE_NAME))
    if sc.TT_STEP_KIND in attrs or sc.TT_RETRY_ATTEMPT in attrs:
        return "tokentrail"
    if "openinference.span.kind" in attrs:
        return "openinference"
    if "traceloop.span.kind" in attrs or "llm.request.type" in attrs or "traceloop.entity.name" in attrs:
        return "openllmetry"
    if name.startswith("claude_code.") or service in _CLAUDE_CODE_SERVICES:
        return "claude_code"
    if service in _CODEX_SERVICES or name in ("run_turn", "stream_request", "session_loop", "codex.exec"):
        return "codex"
    if attrs.get(sc.GEN_AI_AGENT_NAME) == "gemini-cli" or service.startswith("gemini-cli"):
        return "gemini_cli"
    if not attrs.keys().isdisjoint(_PYDANTIC_AI):  # any of them (tested in C: no generator a span)
        return "pydantic_ai"
    if "gen_ai.handoff.to_agent" in attrs or "gen_ai.guardrail.name" in attrs:
        return "openai_agents"
    if _str(resource.get("telemetry.sdk.name")) == "openlit" or "gen_ai.usage.cost" in attrs:
        return "openlit"
    for key in attrs:
        if key.startswith("gen_ai."):
            return "otel"
    return ""


def _kind(attrs: Mapping[str, Any], name: str, operation: str, client: bool) -> tuple[str, str]:
    own = attrs.get(sc.TT_STEP_KIND)
    if own in sc.STEP_KINDS:
        return str(own), _str(attrs.get("tokentrail.step.subkind"))
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in _OPENINFERENCE:
        if oi.upper() in ("AGENT", "CHAIN") and "langgraph" in _str(attrs.get("metadata")):
            return _langgraph_kind(attrs, _OPENINFERENCE[oi.upper()])
        return _OPENINFERENCE[oi.upper()]
    tl = attrs.get("traceloop.span.kind")
    if isinstance(tl, str) and tl in _TRACELOOP:
        return _TRACELOOP[tl]
    if operation in _OPERATIONS:
        return _OPERATIONS[operation]
    request_type = attrs.get("llm.request.type")
    if isinstance(request_type, str) and request_type in _LLM_REQUEST_TYPE:
        return _LLM_REQUEST_TYPE[request_type]
    if name in _SPAN_NAMES:
        return _SPAN_NAMES[name]
    if sc.TT_RETRY_ATTEMPT in attrs:
        return sc.STEP_RETRY, ""
    if "pydantic_ai.model_request.attempt" in attrs:
        # pydantic-ai: an earlier attempt of the model request its parent span answered
        return sc.STEP_LLM, "attempt"
    # A span that names a model and a GenAI operation, system or provider (or reports usage) is a
    # model call, whichever convention it follows, whether or not it succeeded: v1.26-era spans
    # carry no operation name, and a failed request carries no usage.
    if (_first(attrs, _REQUEST_MODEL) is not None or _first(attrs, _RESPONSE_MODEL) is not None) and (
        operation
        or _first(attrs, _PROVIDER) is not None
        or _first(attrs, _INPUT) is not None
        or _first(attrs, _OUTPUT) is not None
    ):
        return sc.STEP_LLM, ""
    if _first(attrs, _TOOL_NAME) is not None:
        return sc.STEP_TOOL, ""
    if client and _first(attrs, _HTTP_METHOD) is not None:
        # one attempt of an HTTP client (httpx, requests, aiohttp, urllib3 instrumentations); under
        # a model call, a failed attempt that was tried again is a retry
        return sc.STEP_OTHER, "http"
    return sc.STEP_OTHER, ""


def _langgraph_kind(attrs: Mapping[str, Any], default: tuple[str, str]) -> tuple[str, str]:
    """OpenInference marks a LangGraph node named "agent" as an AGENT at every step, and the graph
    itself as a CHAIN unless its name says "agent": the graph is the agent run, its nodes are steps."""
    try:
        metadata = json.loads(_str(attrs.get("metadata")))
    except ValueError:
        return default
    if not isinstance(metadata, dict):
        return default
    if "langgraph_node" in metadata:
        return sc.STEP_OTHER, "chain"
    if metadata.get("ls_integration") in ("langgraph", "langchain_create_agent"):
        return sc.STEP_AGENT, ""
    return default


def _usage(n: Normalized, attrs: Mapping[str, Any], convention: str) -> None:
    raw_in = _first(attrs, _INPUT)
    raw_out = _first(attrs, _OUTPUT)
    if convention == "claude_code" and raw_in is None:
        raw_in, raw_out = attrs.get("input_tokens"), attrs.get("output_tokens")
    cache_read = _first(attrs, _CACHE_READ)
    if cache_read is None and convention == "claude_code":
        cache_read = attrs.get("cache_read_tokens")
    # pydantic-ai and OpenInference leave the cached-tokens attribute out when none were read
    n.cache_reported = cache_read is not None or (
        convention in ("pydantic_ai", "openinference") and raw_in is not None
    )
    n.cache_read_tokens = _count(cache_read)
    n.cache_write_tokens = _count(
        _first(attrs, _CACHE_WRITE)
        or (attrs.get("cache_creation_tokens") if convention == "claude_code" else None)
    )
    n.input_tokens = _count(raw_in)
    if _exclusive_input(n, attrs, convention):
        n.input_tokens += n.cache_read_tokens + n.cache_write_tokens
    n.output_tokens = _count(raw_out)
    n.reasoning_tokens = _count(_first(attrs, _REASONING))
    if "thoughts_token_count" in attrs and raw_out is attrs.get("output_token_count"):
        # Gemini's own usage counts the thoughts apart from the answer, and bills both as output
        n.output_tokens += n.reasoning_tokens
    n.usage_reported = raw_in is not None or raw_out is not None


_NAMED_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})


def _openinference_llm(n: Normalized, attrs: Mapping[str, Any]) -> None:
    """OpenInference names the served model (`llm.model_name`) and keeps the request's parameters,
    the asked-for model among them, as JSON; a failed call has only the latter. Responses API spans
    carry no finish reason: the response JSON in `output.value` says how the answer ended."""
    params = attrs.get("llm.invocation_parameters")
    if isinstance(params, str) and '"model"' in params:
        try:
            asked = json.loads(params).get("model")
        except (ValueError, AttributeError):
            asked = None
        if isinstance(asked, str) and asked:
            n.response_model = n.response_model or _str(attrs.get("llm.model_name"))
            n.request_model = asked
    if "llm.finish_reason" in attrs or attrs.get("output.mime_type") != "application/json":
        return
    body = attrs.get("output.value")
    if not isinstance(body, str) or '"status"' not in body:
        return
    try:
        response = json.loads(body)
    except ValueError:
        return
    if not isinstance(response, dict) or response.get("object") != "response":
        return
    n.response_id = n.response_id or _str(response.get("id"))
    output = response["output"] if isinstance(response.get("output"), list) else []
    if response.get("status") == "incomplete":
        n.finish_reasons = ["length"]
    elif any(isinstance(item, dict) and item.get("type") == "function_call" for item in output):
        n.finish_reasons = ["tool_calls"]
    elif response.get("status") == "completed":
        n.finish_reasons = ["stop"]


def _has_content(messages: str) -> bool:
    """Captured messages that hold text, not only their structure (content capture off keeps roles
    and part types): without text, every request would look the same."""
    return (
        '"content"' in messages
        or '"response"' in messages
        or '"arguments"' in messages
        or '"result"' in messages
    )


def _exclusive_input(n: Normalized, attrs: Mapping[str, Any], convention: str) -> bool:
    """Whether the reported input tokens leave out the cached ones, as some providers' own usage
    counts them (`tokentrail.providers`; OTel's `gen_ai.usage.input_tokens` includes them): Claude
    Code's raw usage (Anthropic's), OpenLIT's spans (it passes the provider's usage through), and
    any count smaller than its own cached part."""
    if convention == "claude_code":
        return sc.GEN_AI_USAGE_INPUT_TOKENS not in attrs
    if convention == "openlit" and providers.input_excludes_cache(n.provider):
        return True
    return n.input_tokens < n.cache_read_tokens + n.cache_write_tokens


def _messages_into(
    n: Normalized, attrs: Mapping[str, Any], events: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    n.input_messages = _messages.as_json(attrs.get(sc.GEN_AI_INPUT_MESSAGES))
    n.output_messages = _messages.as_json(attrs.get(sc.GEN_AI_OUTPUT_MESSAGES))
    n.system_instructions = _messages.as_json(attrs.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS))
    if not n.input_messages and (
        "llm.input_messages.0.message.role" in attrs or "llm.input_messages.1.message.role" in attrs
    ):
        system, n.input_messages = _messages.openinference(attrs, "llm.input_messages.")
        n.system_instructions = n.system_instructions or system
    if not n.output_messages and "llm.output_messages.0.message.role" in attrs:
        _, n.output_messages = _messages.openinference(attrs, "llm.output_messages.")
    if not n.input_messages and ("gen_ai.prompt.0.role" in attrs or "gen_ai.prompt.0.content" in attrs):
        system, n.input_messages, _ = _messages.openllmetry(attrs, "gen_ai.prompt.")
        n.system_instructions = n.system_instructions or system
    if not n.output_messages and (
        "gen_ai.completion.0.role" in attrs or "gen_ai.completion.0.content" in attrs
    ):
        _, n.output_messages, finish = _messages.openllmetry(attrs, "gen_ai.completion.")
        n.finish_reasons = n.finish_reasons or finish
    if not n.input_messages:  # v1.26-1.27: one string, as an attribute or a span event
        prompt = attrs.get("gen_ai.prompt") or _event_value(events, "gen_ai.content.prompt", "gen_ai.prompt")
        n.input_messages = _messages.from_text(prompt, "user") or _messages.from_text(
            attrs.get("user_prompt"), "user"
        )
    if not n.output_messages:
        completion = attrs.get("gen_ai.completion") or _event_value(
            events, "gen_ai.content.completion", "gen_ai.completion"
        )
        n.output_messages = _messages.from_text(completion, "assistant")


def _event_value(events: Sequence[tuple[str, Mapping[str, Any]]], name: str, key: str) -> Any:
    """The attribute `key` of the span's first event called `name` (None without one). A loop, not
    a generator: most spans have no events, and this runs for every span."""
    for event, attrs in events:
        if event == name:
            return attrs.get(key)
    return None


def _tool_into(n: Normalized, attrs: Mapping[str, Any], convention: str) -> None:
    name = _first(attrs, _TOOL_NAME)
    if name is None and n.step_kind == sc.STEP_TOOL and convention == "openllmetry":
        name = attrs.get("traceloop.entity.name")
    n.tool_name = _str(name)
    n.tool_call_id = _str(_first(attrs, _TOOL_CALL_ID))
    args = _first(attrs, _TOOL_ARGS)
    result = _first(attrs, _TOOL_RESULT)
    if n.step_kind == sc.STEP_TOOL and convention == "openinference":
        args = args if args is not None else attrs.get("input.value")
        result = result if result is not None else attrs.get("output.value")
    if n.step_kind == sc.STEP_TOOL and convention == "openllmetry":
        args = _traceloop_inputs(args if args is not None else attrs.get("traceloop.entity.input"), n)
        result = result if result is not None else attrs.get("traceloop.entity.output")
    if args is None and n.step_kind == sc.STEP_TOOL and convention == "claude_code":
        args = _what_it_read(n.tool_name, attrs)
    n.tool_arguments = _messages.as_json(args)
    n.tool_result = _messages.as_json(result)
    if n.tool_arguments:
        n.tool_args_hash = _hash(n.tool_name, _canonical(n.tool_arguments))
    if n.step_kind == sc.STEP_TOOL and not n.step_subkind and _only_reads(n.tool_name, n.tool_arguments):
        n.step_subkind = "read"


# Tools that only read (coding agents' file reads, searches and listings), and shell commands
# that only read: a repeat of one finds what the context already holds (the ledger's rereads).
_READ_TOOLS = frozenset(
    {
        "Read", "Grep", "Glob", "LS", "NotebookRead", "WebFetch", "WebSearch",  # Claude Code
        "read_file", "read_many_files", "glob", "search_file_content", "list_directory",  # Gemini CLI
        "web_fetch", "google_web_search", "view_image",
    }
)  # fmt: skip
_SHELL_TOOLS = frozenset(
    {"Bash", "shell", "exec_command", "local_shell", "run_shell_command", "container.exec"}
)
_READ_COMMANDS = frozenset(
    {"cat", "head", "tail", "less", "nl", "wc", "ls", "find", "grep", "rg", "tree", "stat"}
)
_SHELL_WORDS = re.compile(r"[A-Za-z0-9_./-]+|[|;&<>]+")


def _what_it_read(tool: str, attrs: Mapping[str, Any]) -> str | None:
    """Claude Code's tool spans name only the file or the command (with tool details logged): as
    the arguments of a tool that only reads, they tell two reads of one thing apart from others
    (an edit's or a command's would make two different edits of one file look alike)."""
    path, command = attrs.get("file_path"), attrs.get("full_command")
    if tool in _READ_TOOLS and isinstance(path, str) and path:
        return json.dumps({"file_path": path})
    if tool in _SHELL_TOOLS and isinstance(command, str) and command:
        candidate = json.dumps({"command": command})
        return candidate if _only_reads(tool, candidate) else None
    return None


def _only_reads(tool: str, arguments: str) -> bool:
    if tool in _READ_TOOLS:
        return True
    if tool not in _SHELL_TOOLS or not arguments:
        return False
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return False
    command = parsed.get("command") if isinstance(parsed, dict) else None
    if isinstance(command, list):  # Codex: ["bash", "-lc", "sed -n '1,200p' src/config.py"]
        command = (
            command[-1] if command and command[0] in ("bash", "sh", "zsh") else " ".join(map(str, command))
        )
    if not isinstance(command, str):
        return False
    words = _SHELL_WORDS.findall(command)
    if not words or any(w[0] in "|;&<>" for w in words):
        return False  # a pipeline or a redirection may write
    program = words[0].rsplit("/", 1)[-1]
    if program == "sed":  # only `sed -n` prints without editing
        return "-n" in words and "-i" not in words
    if program == "git":
        return len(words) > 1 and words[1] in ("show", "diff", "log", "status", "blame")
    return program in _READ_COMMANDS


def _traceloop_inputs(raw: Any, n: Normalized) -> Any:
    """OpenLLMetry's LangChain tool spans record the whole run envelope (`{"input_str", "inputs",
    "metadata": {step, checkpoint…}, "kwargs": {"tool_call_id"}}`): the arguments are `inputs`, and
    the step counters around them would make every call look different."""
    if not isinstance(raw, str) or '"inputs"' not in raw:
        return raw
    try:
        envelope = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(envelope, dict) or "inputs" not in envelope:
        return raw
    kwargs = envelope.get("kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("tool_call_id"), str) and not n.tool_call_id:
        n.tool_call_id = kwargs["tool_call_id"]
    return envelope["inputs"]


def _fill(
    n: Normalized,
    name: str,
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any],
    is_error: bool,
    events: Sequence[tuple[str, Mapping[str, Any]]],
    client: bool,
) -> None:
    convention = n.convention = _convention(attrs, resource, name)
    _step_into(n, name, attrs, convention, client)
    _cost_into(n, attrs, convention)
    _names_into(n, name, attrs, resource, convention)
    _error_into(n, attrs, is_error, events)
    _tool_into(n, attrs, convention)
    _messages_into(n, attrs, events)
    _hashes_into(n)


def _step_into(n: Normalized, name: str, attrs: Mapping[str, Any], convention: str, client: bool) -> None:
    """What the span is (step kind, operation) and the models it names."""
    operation = n.operation = _str(attrs.get(sc.GEN_AI_OPERATION_NAME) or attrs.get("llm.request.type"))
    n.step_kind, n.step_subkind = _kind(attrs, name, operation, client)
    n.request_model = _str(_first(attrs, _REQUEST_MODEL))
    n.response_model = _str(_first(attrs, _RESPONSE_MODEL))
    if convention == "openinference" and n.step_kind in (sc.STEP_LLM, sc.STEP_EMBEDDING):
        _openinference_llm(n, attrs)
    if not n.request_model and n.step_kind == sc.STEP_OTHER and client and not n.step_subkind:
        # `{operation} {model}` is the conventions' span name: a failed call may carry nothing else
        operation_name, _, model = name.partition(" ")
        if operation_name in _NAMED_OPERATIONS and model and " " not in model:
            n.step_kind, n.request_model = _OPERATIONS[operation_name][0], model


def _cost_into(n: Normalized, attrs: Mapping[str, Any], convention: str) -> None:
    """The provider, the usage and whether the call is billed, and any cost the emitter reported."""
    n.provider = providers.otel_name(_str(_first(attrs, _PROVIDER)))
    if not n.provider and convention == "claude_code" and n.step_kind == sc.STEP_LLM:
        n.provider = providers.ANTHROPIC
    _usage(n, attrs, convention)
    # embeddings are model calls too: billed on their input tokens
    n.billable = n.step_kind in (sc.STEP_LLM, sc.STEP_EMBEDDING) and n.usage_reported
    n.reported_cost = _float(_first(attrs, _COST))
    if n.reported_cost is None and attrs.get("cost_usd_micros") is not None:
        micros = _float(attrs.get("cost_usd_micros"))
        n.reported_cost = micros / 1e6 if micros is not None else None


def _names_into(
    n: Normalized, name: str, attrs: Mapping[str, Any], resource: Mapping[str, Any], convention: str
) -> None:
    """Agent, workflow, conversation, user, the response's id and how it finished."""
    agent = _first(attrs, _AGENT)
    if agent is None and n.step_kind == sc.STEP_AGENT and convention == "openllmetry":
        agent = attrs.get("traceloop.entity.name")
    n.agent_name = _str(agent)
    if n.step_kind == sc.STEP_AGENT and not n.agent_name:
        if not n.step_subkind and n.operation == sc.OP_INVOKE_AGENT and convention != "openinference":
            n.step_subkind = "workflow"  # an agent invocation without an agent: the run around the agents
        # the span's own name then names the run (OpenInference names agent spans after their agent)
        n.agent_name = name.removeprefix(f"{sc.OP_INVOKE_AGENT} ")
    n.workflow_name = _str(_first(attrs, _WORKFLOW))
    n.conversation_id = _str(_first(attrs, _CONVERSATION) or _first(resource, _CONVERSATION))
    users = _DEVELOPER if convention in _CODING_AGENTS else _USER
    n.user_id = _str(_first(attrs, users) or _first(resource, users))
    n.response_id = n.response_id or _str(_first(attrs, _RESPONSE_ID))
    n.finish_reasons = n.finish_reasons or _strings(_first(attrs, _FINISH))


def _error_into(
    n: Normalized, attrs: Mapping[str, Any], is_error: bool, events: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """How the span failed (error type, else HTTP status, else its exception event) and which
    attempt it was."""
    n.error_type = _str(attrs.get(sc.ERROR_TYPE))
    if n.error_type.startswith("<class '"):  # an exception class written as an attribute: its name
        n.error_type = n.error_type[8:].rstrip("'>").rsplit(".", 1)[-1]
    status = _count(_first(attrs, _HTTP_STATUS))
    if not n.error_type and status >= 400:
        n.error_type = str(status)
    if not n.error_type and is_error:
        n.error_type = _str(_event_value(events, "exception", "exception.type")) or "_OTHER"
    n.retry_attempt = min(_count(_first(attrs, _RETRY)), 65535)
    if n.step_subkind == "attempt":
        n.retry_attempt = min(_count(attrs.get("pydantic_ai.model_request.attempt")) + 1, 65535)
    n.retry_reason = _str(attrs.get(sc.TT_RETRY_REASON))


def _hashes_into(n: Normalized) -> None:
    """What makes two requests, two kinds of step or two asked-for tool calls alike."""
    if (
        n.step_kind in (sc.STEP_LLM, sc.STEP_EMBEDDING)
        and n.input_messages
        and _has_content(n.input_messages)
    ):
        # Raw text, not canonical JSON: repeats of one request come from one emitter, which encodes
        # them alike, and re-encoding large conversations per span costs more than it buys.
        n.input_hash = _hash(n.request_model or n.response_model, n.system_instructions, n.input_messages)
    system = n.system_instructions or _messages.leading_system(n.input_messages)
    if system:
        n.system_hash = _hash(system)
    if n.output_messages and ("tool_call" in n.output_messages or not n.finish_reasons):
        calls, finish = _messages.tool_calls_and_finish(n.output_messages)
        n.requested_tools = [_hash(tool, _canonical(args)) for tool, args in calls]
        n.finish_reasons = n.finish_reasons or finish


def normalize(
    name: str,
    attributes: Mapping[str, Any],
    resource: Mapping[str, Any],
    *,
    is_error: bool = False,
    events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    client: bool = False,
) -> Normalized:
    """`client`: the span's kind is CLIENT (an HTTP client span is an attempt, a server span is not)."""
    n = Normalized()
    try:
        _fill(n, name, attributes, resource, is_error, events, client)
    except Exception:  # never let one odd span stop the pipeline; what was filled stays
        logger.debug("normalizing span %r failed", name, exc_info=True)
    return n
