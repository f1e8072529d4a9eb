"""`tokentrail demo`: a multi-agent support workload sent through the SDK against the local
model stand-in, so a new user sees realistic traces, with every kind of waste, within a minute.

Each scenario is an ordinary agent written with the public API; the waste in it is the kind real
agents produce:
- a router that asks a premium model for a one-word label, although part of its traffic runs on a
  small model that routes just as well (oversized model);
- a rate-limited call retried twice (retry chain) and a call that is simply repeated (duplicate);
- a researcher that cycles search → read → search → read on the same query (loop);
- a drafting agent whose context grows every step and never hits the prompt cache because its
  system prompt starts with a timestamp (bloated, uncached context);
- an agent whose tool fails and which gives up (failed task, recorded as a failed outcome);
- and plain, productive runs for comparison.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import tokentrail
from tokentrail.demo.llm_server import LLMServer

__all__ = ["run"]

_POLICY = (
    "Refunds are possible within 30 days of delivery. Damaged items are replaced at no cost. "
    "Orders ship within two working days; tracking numbers are sent by email. "
) * 40
_CUSTOMERS = ["ana", "bo", "chen", "dara", "eli", "fay", "gus", "hana"]


class _Models:
    """Chat calls through the openai and anthropic clients when they are installed (instrumented
    automatically), else through a plain HTTP request marked up with the manual API."""

    def __init__(self, server: LLMServer) -> None:
        self.server = server
        try:
            import openai
        except ImportError:
            self.client: Any = None
        else:
            self.client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="demo", max_retries=0)
        try:
            import anthropic
        except ImportError:
            self.anthropic: Any = None
        else:
            self.anthropic = anthropic.Anthropic(base_url=server.base_url, api_key="demo", max_retries=0)

    def chat(self, model: str, messages: list[dict[str, Any]], reply: str = "Done.") -> str:
        self.server.reply = reply
        if model.startswith("claude") and self.anthropic is not None:
            system = "\n".join(m["content"] for m in messages if m["role"] == "system")
            turns = [
                {"role": "assistant" if m["role"] == "assistant" else "user", "content": m["content"]}
                for m in messages
                if m["role"] != "system"
            ]
            message = self.anthropic.messages.create(
                model=model, system=system, messages=turns, max_tokens=1024
            )
            return "".join(block.text for block in message.content if block.type == "text")
        if self.client is not None:
            response = self.client.chat.completions.create(model=model, messages=messages)
            return str(response.choices[0].message.content)
        with tokentrail.llm(model, provider="openai") as step:
            request = urllib.request.Request(
                f"{self.server.base_url}/v1/chat/completions",
                data=json.dumps({"model": model, "messages": messages}).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                body = json.load(answer)
            usage = body["usage"]
            step.set_usage(
                input_tokens=usage["prompt_tokens"],
                output_tokens=usage["completion_tokens"],
                cache_read_tokens=usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
            )
            step.set_response(
                model=body["model"],
                id=body["id"],
                finish_reasons=[c["finish_reason"] for c in body["choices"]],
            )
            return str(body["choices"][0]["message"]["content"])


def _system(extra: str = "") -> dict[str, str]:
    return {"role": "system", "content": extra + "You are a support agent for an online shop.\n" + _POLICY}


def _tool(name: str, result: Any, **arguments: Any) -> Any:
    with tokentrail.tool(name, arguments=arguments) as step:
        time.sleep(0.02)
        step.set_result(result)
        return result


def productive(models: _Models, rng: random.Random, customer: str) -> None:
    order = rng.randrange(1000, 9999)
    with tokentrail.agent(
        "support", conversation_id=f"chat-{customer}", user_id=customer, task_type="order_status"
    ):
        with tokentrail.plan("support"):
            pass
        history = [_system(), {"role": "user", "content": f"Where is my order {order}?"}]
        models.chat("gpt-4o-mini", history, reply="I'll look the order up.")
        status = _tool("lookup_order", {"order": order, "status": "shipped", "eta": "tomorrow"}, order=order)
        history.append({"role": "tool", "content": json.dumps(status)})
        models.chat("gpt-4o-mini", history, reply=f"Order {order} has shipped and arrives tomorrow.")
        tokentrail.record_outcome("resolved", success=True)


def oversized_router(models: _Models, rng: random.Random, customer: str, model: str = "gpt-4.1") -> None:
    with tokentrail.agent(
        "router", conversation_id=f"chat-{customer}", user_id=customer, task_type="routing"
    ):
        question = rng.choice(["Can I return shoes?", "My parcel is late", "Invoice needed"])
        models.chat(
            model,
            [
                _system("Answer with one word: refund, shipping or billing.\n"),
                {"role": "user", "content": question},
            ],
            reply="shipping",
        )
        tokentrail.record_outcome("routed", success=True)


def small_router(models: _Models, rng: random.Random, customer: str) -> None:
    """The share of routing traffic that runs on the small model, which routes just as well."""
    oversized_router(models, rng, customer, model="gpt-4o-mini")


def retries_and_duplicates(models: _Models, rng: random.Random, customer: str) -> None:
    with tokentrail.agent(
        "billing", conversation_id=f"chat-{customer}", user_id=customer, task_type="invoice"
    ):
        history = [_system(), {"role": "user", "content": "Please send the invoice for my last order."}]
        models.server.fail_next(429, retry_after=0.05, times=2)
        tokentrail.retrying(
            lambda: models.chat(
                "gpt-4o",
                history,
                reply="I found your account; fetching the latest invoice and checking its payment status now.",
            ),
            name="chat gpt-4o",
            attempts=3,
            wait=0.05,
        )
        _tool("get_invoice", {"invoice": "INV-204", "total": 84.5}, customer=customer)
        # the agent asks the same question twice: the second answer was already there
        history.append({"role": "tool", "content": '{"invoice": "INV-204", "total": 84.5}'})
        answer = "Invoice INV-204 for 84.50 EUR is attached to the email we just sent to the address on your account."
        models.chat("gpt-4o", history, reply=answer)
        models.chat("gpt-4o", history, reply=answer)
        tokentrail.record_outcome("resolved", success=True)


def looping_researcher(models: _Models, rng: random.Random, customer: str) -> None:
    with tokentrail.agent(
        "researcher", conversation_id=f"chat-{customer}", user_id=customer, task_type="policy_question"
    ):
        history = [_system(), {"role": "user", "content": "Is a damaged mirror covered?"}]
        for _ in range(3):  # search → read → search → read … on the same query, learning nothing
            models.chat(
                "gpt-4o",
                history,
                reply="I will search the policy documents for damaged items and read the section that applies.",
            )
            found = _tool("search_policy", ["policy/damage.md"], query="damaged mirror")
            text = _tool("read_document", "Damaged items are replaced at no cost.", path="policy/damage.md")
            history.append({"role": "tool", "content": json.dumps(found) + "\n" + text})
        models.chat(
            "gpt-4o",
            history,
            reply="Yes: a mirror that arrived damaged is replaced at no cost; send us a photo and we ship a new one.",
        )
        tokentrail.record_outcome("resolved", success=True)


def bloated_drafter(models: _Models, rng: random.Random, customer: str) -> None:
    with tokentrail.agent(
        "drafter", conversation_id=f"chat-{customer}", user_id=customer, task_type="complaint_reply"
    ):
        # a timestamp at the top of the prompt: no two requests share a prefix, nothing is cached
        history = [
            _system(f"Now: {time.time_ns()}\n"),
            {"role": "user", "content": "Write a reply to this complaint."},
        ]
        for page in range(5):
            models.chat("claude-sonnet-4-6", history, reply="Draft paragraph. " * 20)
            crm = _tool(
                "fetch_crm_history",
                "Ticket history: " + "previous ticket text. " * 1500,
                customer=customer,
                page=page,
            )
            history.append({"role": "tool", "content": crm})  # carried along every following step
            history[0] = _system(f"Now: {time.time_ns()}\n")
        tokentrail.record_outcome("sent", success=True)


def failing_agent(models: _Models, rng: random.Random, customer: str) -> None:
    try:
        with tokentrail.agent(
            "refunds", conversation_id=f"chat-{customer}", user_id=customer, task_type="refund"
        ):
            history = [_system(), {"role": "user", "content": "Refund order 5521 please."}]
            models.chat("gpt-4o", history, reply="Processing the refund.")
            try:
                with tokentrail.tool("issue_refund", arguments={"order": 5521}):
                    raise ConnectionError("payments service unavailable")
            except ConnectionError:
                tokentrail.record_outcome("refund_issued", success=False)  # the agent gives up
                raise
    except ConnectionError:
        pass


SCENARIOS: list[Callable[[_Models, random.Random, str], None]] = [
    productive,
    small_router,
    oversized_router,
    retries_and_duplicates,
    looping_researcher,
    bloated_drafter,
    failing_agent,
]


def run(
    *,
    tasks: int = 18,
    endpoint: str | None = None,
    latency: float = 0.05,
    seed: int = 1,
    progress: Callable[[str], None] = print,
) -> int:
    """Run `tasks` agent tasks (every scenario at least once) and flush; returns tasks run."""
    rng = random.Random(seed)
    tokentrail.init(endpoint=endpoint, service_name="tokentrail-demo", capture_content=True)
    with LLMServer(latency=latency) as server:
        models = _Models(server)
        for i in range(tasks):
            scenario = SCENARIOS[i % len(SCENARIOS)]
            customer = rng.choice(_CUSTOMERS)
            scenario(models, rng, customer)
            progress(f"[{i + 1}/{tasks}] {scenario.__name__.replace('_', ' ')} for {customer}")
    tokentrail.flush()
    return tasks
