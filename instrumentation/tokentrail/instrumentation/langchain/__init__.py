"""langchain: LangChain and LangGraph runs as GenAI spans, from a callback handler on every callback manager.

LangChain reports each run (chain, graph, node, model call, tool, retriever) to the handlers of
its callback managers; wrapping `BaseCallbackManager.__init__` puts ours on every one of them,
inheritable, so runs nest by `run_id`/`parent_run_id` whatever the entry point. The package:
- `_handler`: the callbacks, and what span each kind of run becomes;
- `_runs`: the runs in flight (run id → span), where a new run's span goes, and ending them;
- `_model`: a model run's request and `LLMResult` read into the shared model-call helper;
- `_messages`: LangChain messages and generations in the OTel GenAI message shape;
- `_context`: the hooks that make a run's span current for code running inside it, so spans of
  other instrumentations (the openai client's, manual `tokentrail.tool(...)`) nest under it.
`uninstrument` unwraps what was wrapped and makes the handler inert (managers built meanwhile
still hold it). Callbacks never raise into the application.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from tokentrail.instrumentation._safe import logger
from tokentrail.instrumentation.langchain._context import (
    Wrapper,
    config_context_wrapper,
    model_wrappers,
    stream_wrappers,
)
from tokentrail.instrumentation.langchain._handler import Handler

__all__ = ["LangChainInstrumentor"]

_instruments = ("langchain-core >= 0.2",)


def _manager_init_wrapper(handler: Handler) -> Wrapper:
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


def _wrap(module: str, name: str, wrapper: Wrapper, done: list[tuple[str, str]]) -> None:
    try:
        wrapt.wrap_function_wrapper(module, name, wrapper)
        done.append((module, name))
    except (ImportError, AttributeError):
        logger.debug("tokentrail: %s.%s not found; not wrapped", module, name)


class LangChainInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds one handler to every LangChain callback manager; `uninstrument` makes it inert."""

    _handler: Handler | None = None
    _wrapped: tuple[tuple[str, str], ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        handler = Handler()
        done: list[tuple[str, str]] = []
        _wrap(
            "langchain_core.callbacks.base",
            "BaseCallbackManager.__init__",
            _manager_init_wrapper(handler),
            done,
        )
        for module, sync_name, async_name, position, key in _MODEL_TARGETS:
            sync, async_ = model_wrappers(handler, position, key)
            _wrap(module, sync_name, sync, done)
            _wrap(module, async_name, async_, done)
        for module, sync_name, async_name in _STREAM_TARGETS:
            sync, async_ = stream_wrappers(handler)
            _wrap(module, sync_name, sync, done)
            _wrap(module, async_name, async_, done)
        for module, name in _CONFIG_TARGETS:
            _wrap(module, name, config_context_wrapper(handler), done)
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
