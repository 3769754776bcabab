"""The official `anthropic` SDK's streaming Messages against the Anthropic fake, validating every
event's raw JSON against the SDK's own `RawMessageStreamEvent`, with each way the SDK can
authenticate.

    voxpipe fake anthropic --port 8789 --replies tests/conformance/llm-replies.toml \\
        --time-to-first-token-ms 0 --token-interval-ms 0 &
    python tests/conformance/anthropic_messages.py http://127.0.0.1:8789 [--api-key sk-…]

For each credential style — `api_key=` (the SDK sends it as it likes: `Authorization: Bearer`
in current releases), `auth_token=` (`Authorization: Bearer`), and a plain `x-api-key` header
— one conversation: request 1 (`messages.create(stream=True)`) streams text then a
`get_weather` tool_use (stop_reason `tool_use`); request 2 (the SDK's `messages.stream()`
helper, which accumulates the events itself) sends the tool_result back and streams the answer
(stop_reason `end_turn`). Exits 1 on any event the SDK's types reject, an `event:` name that is
not its data's `type`, or a conversation that goes otherwise. The fake must have no other
replies script than tests/conformance/llm-replies.toml (they cycle, two per conversation).
"""

from __future__ import annotations

import argparse
import json
import os
import typing

import anthropic
from anthropic.types import RawMessageStreamEvent

from common import Validator, expect, main, parse_sse, tee_client

MODEL = "claude-sonnet-4-5"
TOOLS: list[typing.Any] = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    }
]


def label(event: dict[str, typing.Any]) -> str:
    for key in ("delta", "content_block"):
        inner = event.get(key)
        if isinstance(inner, dict) and "type" in inner:
            return f"{event['type']} ({inner['type']})"
    return str(event["type"])


def validate_body(v: Validator, body: bytes, mode: str) -> list[dict[str, typing.Any]]:
    """Every event of the raw stream validates and is named after its data's `type`; `ping`
    (which the SDK skips) is exactly `{"type": "ping"}`."""
    events = []
    for name, data in parse_sse(body):
        if name == "ping":
            expect(json.loads(data) == {"type": "ping"}, f"{mode}: a ping with more than a type: {data}")
            v.skipped["ping"] += 1
            continue
        expect(name != "error", f"{mode}: the fake streamed an error: {data}")
        event = v.check(data)
        expect(event["type"] == name, f"{mode}: `event: {name}` carries a {event['type']!r}")
        events.append(event)
    expect(events and events[0]["type"] == "message_start", f"{mode}: the stream does not start with message_start")
    expect(events[-1]["type"] == "message_stop", f"{mode}: the stream does not end with message_stop")
    return events


def conversation(client: anthropic.Anthropic, exchanges: list[typing.Any], v: Validator, mode: str) -> None:
    messages: list[typing.Any] = [{"role": "user", "content": "What's the weather in Paris?"}]

    # 1: text, then a tool_use, through the plain event stream.
    stream = client.messages.create(model=MODEL, max_tokens=256, messages=messages, tools=TOOLS, stream=True)
    blocks: dict[int, dict[str, typing.Any]] = {}
    stop_reason, n = None, 0
    for event in stream:
        n += 1
        if event.type == "content_block_start":
            blocks[event.index] = {"block": event.content_block.to_dict(), "text": "", "json": ""}
        elif event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                blocks[event.index]["text"] += event.delta.text
            elif event.delta.type == "input_json_delta":
                blocks[event.index]["json"] += event.delta.partial_json
        elif event.type == "message_delta":
            stop_reason = event.delta.stop_reason
    events = validate_body(v, exchanges[-1].body, mode)
    expect(len(events) == n, f"{mode}: {len(events)} events on the wire, the SDK yielded {n}")
    expect(stop_reason == "tool_use", f"{mode}: request 1 stopped with {stop_reason!r}")
    expect([b["block"]["type"] for b in blocks.values()] == ["text", "tool_use"], f"{mode}: blocks {blocks}")
    expect(blocks[0]["text"] == "Let me check the weather.", f"{mode}: request 1 said {blocks[0]['text']!r}")
    tool_use = blocks[1]["block"]
    expect(tool_use["name"] == "get_weather", f"{mode}: tool_use {tool_use}")
    expect(json.loads(blocks[1]["json"]) == {"city": "Paris", "unit": "celsius"}, f"{mode}: input {blocks[1]['json']!r}")

    # 2: the tool_result goes back; the SDK's stream helper accumulates the answer.
    tool_use["input"] = json.loads(blocks[1]["json"])
    messages.append({"role": "assistant", "content": [{"type": "text", "text": blocks[0]["text"]}, tool_use]})
    result = {"type": "tool_result", "tool_use_id": tool_use["id"], "content": json.dumps({"sky": "sunny", "celsius": 22})}
    messages.append({"role": "user", "content": [result]})
    with client.messages.stream(model=MODEL, max_tokens=256, messages=messages, tools=TOOLS) as s:
        for _ in s:
            pass
        final = s.get_final_message()
    validate_body(v, exchanges[-1].body, mode)
    expect(final.stop_reason == "end_turn", f"{mode}: request 2 stopped with {final.stop_reason!r}")
    texts = [b.text for b in final.content if b.type == "text"]
    expect(texts == ["It is sunny and twenty-two degrees in Paris."], f"{mode}: request 2 said {texts}")
    expect(final.usage.output_tokens > 0, f"{mode}: usage {final.usage}")
    expect(len(exchanges) == 2 and all(e.status == 200 for e in exchanges), f"{mode}: exchanges {[e.status for e in exchanges]}")


def run(base_url: str, key: str) -> list[Validator]:
    # Only the credentials given here, whatever the environment holds.
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE", "ANTHROPIC_BASE_URL"):
        os.environ.pop(var, None)
    base_url = base_url.rstrip("/").removesuffix("/v1")
    v = Validator("anthropic messages", RawMessageStreamEvent, label=label)
    modes: list[tuple[str, dict[str, typing.Any]]] = [
        ("api_key", {"api_key": key}),
        ("auth_token", {"auth_token": key}),
        ("x-api-key header", {"default_headers": {"X-Api-Key": key}}),
    ]
    sent = []
    for mode, credentials in modes:
        http_client, exchanges = tee_client(anthropic.DefaultHttpxClient)
        client = anthropic.Anthropic(base_url=base_url, http_client=http_client, max_retries=0, timeout=20, **credentials)
        conversation(client, exchanges, v, mode)
        headers = exchanges[0].headers
        expect("anthropic-version" in headers, f"{mode}: the SDK sent no anthropic-version")
        auth = [h for h in ("x-api-key", "authorization") if h in headers]
        if mode == "auth_token":
            expect(auth == ["authorization"] and headers["authorization"] == f"Bearer {key}", f"{mode}: sent {auth}")
        elif mode == "x-api-key header":
            expect(auth == ["x-api-key"], f"{mode}: sent {auth}")
        sent.append(f"{mode}: {' + '.join(auth)}")
    print("credentials sent by the SDK, each accepted:", "; ".join(sent))
    return [v]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_url", help="the fake's base URL, e.g. http://127.0.0.1:8789 (a trailing /v1 is fine)")
    p.add_argument("--api-key", default="sk-ant-conformance", help="the key to send in each credential style")
    a = p.parse_args()
    main(lambda: run(a.base_url, a.api_key), "anthropic messages")
