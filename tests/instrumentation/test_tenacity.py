from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import tenacity
from opentelemetry.trace import StatusCode

import tokentrail
from tokentrail.instrumentation.tenacity import TenacityInstrumentor


@pytest.fixture
def instrumented(spans) -> Iterator[None]:
    TenacityInstrumentor().instrument()
    yield
    TenacityInstrumentor().uninstrument()


def _attempts(spans, name: str):
    found = [s for s in spans.get_finished_spans() if s.name == f"retry {name}"]
    return sorted(found, key=lambda s: s.attributes["tokentrail.retry.attempt"])


def test_each_attempt_is_a_retry_span_under_the_caller(spans, instrumented):
    failures = [ConnectionError("reset"), TimeoutError("slow")]

    @tenacity.retry(stop=tenacity.stop_after_attempt(5), wait=tenacity.wait_fixed(0.01))
    def fetch() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    with tokentrail.agent("caller"):
        assert fetch() == "ok"
    attempts = _attempts(spans, fetch.__wrapped__.__qualname__)  # type: ignore[attr-defined]
    root = next(s for s in spans.get_finished_spans() if s.name == "invoke_agent caller")
    assert [s.attributes["tokentrail.retry.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert attempts[1].attributes["tokentrail.retry.reason"] == "ConnectionError: reset"
    assert attempts[2].attributes["tokentrail.retry.reason"] == "TimeoutError: slow"
    assert attempts[1].attributes["tokentrail.retry.wait_s"] >= 0.01
    assert all(s.parent.span_id == root.context.span_id for s in attempts)
    assert all(s.links[0].context.span_id == attempts[0].context.span_id for s in attempts[1:])


def test_async_retries_and_final_failure_passes_through(spans, instrumented):
    error = ValueError("bad payload")

    @tenacity.retry(stop=tenacity.stop_after_attempt(2), reraise=True)
    async def parse() -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        asyncio.run(parse())
    assert caught.value is error
    assert len(_attempts(spans, parse.__wrapped__.__qualname__)) == 2  # type: ignore[attr-defined]


def test_uninstrument_removes_the_spans(spans):
    TenacityInstrumentor().instrument()
    TenacityInstrumentor().uninstrument()

    @tenacity.retry(stop=tenacity.stop_after_attempt(1))
    def once() -> int:
        return 1

    assert once() == 1
    assert spans.get_finished_spans() == ()
