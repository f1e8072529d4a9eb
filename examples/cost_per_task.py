"""Worked example: cost per task and per successful task.

Ten refund tasks run against the local model stand-in (`LLMServer`), so the token counts, and
so the costs, are the same on every machine. Seven succeed, two fail, one is never judged; two of
the verdicts arrive later, over HTTP, the way a ticketing system would send them.

    tokentrail up &                      # the collector and the UI
    python examples/cost_per_task.py     # then open http://127.0.0.1:4320/costs
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import openai

import tokentrail
from tokentrail.demo.llm_server import LLMServer

ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
POLICY = "Refunds are possible within 30 days of delivery. " * 60


def refund(client: openai.OpenAI, order: int) -> None:
    with tokentrail.agent("refunds", task_id=f"refund-{order}", task_type="refund"):
        history: list[Any] = [
            {"role": "system", "content": POLICY},
            {"role": "user", "content": f"Refund order {order}."},
        ]
        client.chat.completions.create(model="gpt-4o-mini", messages=history)
        with tokentrail.tool("issue_refund", arguments={"order": order}) as step:
            step.set_result({"order": order, "refunded": True})
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[*history, {"role": "user", "content": "done"}]
        )


def main() -> None:
    tokentrail.init(endpoint=ENDPOINT, service_name="refund-bot")
    with LLMServer(reply="Your refund is on its way.") as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="example")
        for order in range(1001, 1011):
            refund(client, order)
            if order <= 1007:  # known at once: the refund went through
                tokentrail.record_outcome("refund_issued", success=True, task_id=f"refund-{order}")
    tokentrail.flush()
    # later, from the ticketing system: two refunds bounced; refund-1010 is never judged
    for order in (1008, 1009):
        body = json.dumps({"task_id": f"refund-{order}", "name": "refund_issued", "success": False}).encode()
        request = urllib.request.Request(
            f"{ENDPOINT}/api/outcomes", data=body, method="POST", headers={"content-type": "application/json"}
        )
        urllib.request.urlopen(request).close()
    print("10 refund tasks sent: 7 succeeded, 2 failed, 1 without an outcome. See /costs in the web UI.")


if __name__ == "__main__":
    main()
