"""Model providers: what Tokentrail knows about each, in one table.

- The name a span is stored under: OpenTelemetry's `gen_ai.provider.name` value (`aws.bedrock`,
  `gcp.vertex_ai`, `x_ai`…), and the other names emitters use for the same provider (aliases:
  older `gen_ai.system` values, OpenInference's `llm.provider`, OpenLLMetry's vendors, LangChain's
  `ls_provider`). Frameworks (LangChain, CrewAI…) are not providers: a span naming one names none.
- The provider's id in the price catalog (`genai-prices`), for `tokentrail.pricing`.
- How it counts input tokens. OTel's `gen_ai.usage.input_tokens` includes cache reads and
  writes; Anthropic's API reports `input_tokens` without them, and emitters that pass a
  provider's own usage through (rather than OTel's) inherit that (`tokentrail.collector.normalize`).

Plain data and functions, no imports: the normalizer, pricing and the SDK's instrumentors can all
use it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANTHROPIC", "PROVIDERS", "Provider", "catalog_id", "input_excludes_cache", "otel_name"]


@dataclass(frozen=True)
class Provider:
    name: str  # OTel `gen_ai.provider.name` value
    catalog: str | None = None  # genai-prices provider id
    aliases: tuple[str, ...] = ()
    #: reports input tokens without the cached ones (its own API's usage, not OTel's)
    input_excludes_cache: bool = False


ANTHROPIC = "anthropic"

PROVIDERS = (
    Provider("openai", "openai"),
    Provider(ANTHROPIC, "anthropic", input_excludes_cache=True),
    Provider("azure.ai.openai", "azure", ("az.ai.openai", "azure", "azure_openai")),
    Provider("azure.ai.inference", "azure", ("az.ai.inference",)),
    Provider("aws.bedrock", "aws", ("aws", "bedrock", "amazon_bedrock", "bedrock_converse")),
    Provider("gcp.gemini", "google", ("gemini",)),
    Provider("gcp.vertex_ai", "google", ("vertex_ai", "vertexai", "google_vertexai")),
    Provider("gcp.gen_ai", "google", ("google", "google_genai")),
    Provider("mistral_ai", "mistral", ("mistralai", "mistral")),
    Provider("x_ai", "x-ai", ("xai",)),
    Provider("deepseek", "deepseek"),
    Provider("groq", "groq"),
    Provider("cohere", "cohere"),
    Provider("perplexity", "perplexity"),
    Provider("moonshot_ai", "moonshotai", ("moonshot",)),
    Provider("together", "together", ("together_ai",)),
    Provider("fireworks", "fireworks"),
    Provider("cerebras", "cerebras"),
    Provider("openrouter", "openrouter"),
    Provider("ibm.watsonx.ai", None, ("watsonx", "ibm")),
)

_FRAMEWORKS = frozenset(
    {"langchain", "crewai", "langgraph", "llamaindex", "llama_index", "haystack", "dspy", "autogen"}
)
_BY_NAME = {p.name: p for p in PROVIDERS}
_ALIASES = {alias: p.name for p in PROVIDERS for alias in p.aliases}


def otel_name(raw: str) -> str:
    """The name to store a provider under, from any name an emitter gave it ("" for none or a
    framework); a name this table does not know is kept, lower-cased."""
    value = raw.strip().lower()
    if not value or value in _FRAMEWORKS:
        return ""
    return _ALIASES.get(value, value)


def catalog_id(name: str) -> str | None:
    """The price catalog's id for a stored provider name, when the catalog has one."""
    provider = _BY_NAME.get(name.lower()) if name else None
    return provider.catalog if provider is not None else None


def input_excludes_cache(name: str) -> bool:
    """Whether the provider's own usage counts input tokens without the cached ones."""
    provider = _BY_NAME.get(name)
    return provider is not None and provider.input_excludes_cache
