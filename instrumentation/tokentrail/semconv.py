"""Attribute names, defined once and imported by the SDK, the normalizer and the queries.

The OpenTelemetry GenAI conventions are still at Development stability;
these are the current names we emit. Older and third-party names that the collector accepts
live beside the normalizer, which maps them onto these.
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry GenAI (current names) ---------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # deprecated in v1.37, still emitted by many
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"

GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"

GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"

GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"

GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"

GEN_AI_DATA_SOURCE_ID: Final = "gen_ai.data_source.id"

ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
USER_ID: Final = "user.id"
ENDUSER_ID: Final = "enduser.id"
SESSION_ID: Final = "session.id"
SERVICE_NAME: Final = "service.name"

# gen_ai.operation.name values
OP_CHAT: Final = "chat"
OP_GENERATE_CONTENT: Final = "generate_content"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_EMBEDDINGS: Final = "embeddings"
OP_RETRIEVAL: Final = "retrieval"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CREATE_AGENT: Final = "create_agent"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_PLAN: Final = "plan"

# --- Tokentrail's own names, only where the conventions have none ------------------------------
TT_STEP_KIND: Final = "tokentrail.step.kind"
TT_RETRY_ATTEMPT: Final = "tokentrail.retry.attempt"
TT_RETRY_REASON: Final = "tokentrail.retry.reason"
TT_RETRY_WAIT_S: Final = "tokentrail.retry.wait_s"
TT_RETRY_FIRST_SPAN_ID: Final = "tokentrail.retry.first_span_id"
#: where the retry happened: "http" for the attempts a model client retries on its own
TT_RETRY_LAYER: Final = "tokentrail.retry.layer"
TT_OUTCOME_NAME: Final = "tokentrail.outcome.name"
TT_OUTCOME_VALUE: Final = "tokentrail.outcome.value"
TT_OUTCOME_SUCCESS: Final = "tokentrail.outcome.success"
TT_OUTCOME_EVENT: Final = "tokentrail.outcome"
TT_TASK_ID: Final = "tokentrail.task.id"
TT_TASK_TYPE: Final = "tokentrail.task.type"
TT_PROJECT: Final = "tokentrail.project"

# tokentrail.step.kind values; also the normalized `step_kind` column's values
STEP_AGENT: Final = "agent"
STEP_PLAN: Final = "plan"
STEP_LLM: Final = "llm"
STEP_TOOL: Final = "tool"
STEP_RETRY: Final = "retry"
STEP_RETRIEVAL: Final = "retrieval"
STEP_EMBEDDING: Final = "embedding"
STEP_OTHER: Final = "other"
STEP_KINDS: Final = (
    STEP_AGENT,
    STEP_PLAN,
    STEP_LLM,
    STEP_TOOL,
    STEP_RETRY,
    STEP_RETRIEVAL,
    STEP_EMBEDDING,
    STEP_OTHER,
)
TT_OUTCOME_TRACE_ID: Final = "tokentrail.outcome.trace_id"
TT_STEP_SUBKIND: Final = "tokentrail.step.subkind"
