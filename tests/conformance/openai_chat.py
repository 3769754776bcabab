"""The official `openai` SDK's chat-completions streaming against the chat fake, validating
every chunk's raw JSON against the SDK's own `ChatCompletionChunk`.

    voxpipe fake llm --port 8788 --replies tests/conformance/llm-replies.toml \\
        --time-to-first-token-ms 0 --token-interval-ms 0 &
    OPENAI_API_KEY=sk-conformance python tests/conformance/openai_chat.py http://127.0.0.1:8788/v1

Request 1 (`create(stream=True)` with `include_usage`): text and a `get_weather` tool call,
finish_reason `tool_calls`, then the usage chunk (`choices: []`) and `[DONE]`. Request 2 (the
SDK's `chat.completions.stream()` helper, which accumulates the chunks itself): the tool's
result goes back and the answer streams as text, finish_reason `stop`, no usage chunk. Exits 1
on any chunk the SDK's types reject or a reply that goes otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import typing

import openai
from openai.types.chat import ChatCompletionChunk

from common import Validator, expect, fail, main, parse_sse, tee_client

TOOLS: list[typing.Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city"],
            },
        },
    }
]


def label(chunk: dict[str, typing.Any]) -> str:
    if not chunk["choices"]:
        return "usage chunk" if chunk.get("usage") else "chunk without choices"
    choice = chunk["choices"][0]
    delta = choice["delta"]
    if choice.get("finish_reason"):
        return f"finish_reason {choice['finish_reason']}"
    if delta.get("tool_calls"):
        return "tool_calls delta"
    if delta.get("content"):
        return "content delta"
    if delta.get("role"):
        return "role delta"
    return "empty delta"


def validate_body(v: Validator, body: bytes, sdk_chunks: int) -> list[dict[str, typing.Any]]:
    """Every `data:` of the raw stream is a valid chunk, the last is `[DONE]`, and the SDK yielded
    one chunk for each."""
    events = parse_sse(body)
    expect(events and events[-1][1] == "[DONE]", f"chat: the stream does not end with [DONE]: {events[-1:]}")
    chunks = []
    for name, data in events[:-1]:
        expect(name is None, f"chat: chat chunks carry no `event:` name, got {name!r}")
        expect(data != "[DONE]", "chat: [DONE] before the end of the stream")
        chunks.append(v.check(data, "chunk"))
    expect(len(chunks) == sdk_chunks, f"chat: {len(chunks)} chunks on the wire, the SDK yielded {sdk_chunks}")
    ids = {c["id"] for c in chunks}
    expect(len(ids) == 1, f"chat: one completion's chunks carry ids {ids}")
    return chunks


def run(base_url: str, api_key: str) -> list[Validator]:
    http_client, exchanges = tee_client(openai.DefaultHttpxClient)
    client = openai.OpenAI(api_key=api_key, base_url=base_url, http_client=http_client, max_retries=0, timeout=20)
    v = Validator("chat.completions", ChatCompletionChunk, key="object", label=label)
    messages: list[typing.Any] = [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": "What's the weather in Paris?"},
    ]

    # 1: text and a tool call, with usage.
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    text, calls, finish, usage, n = "", {}, None, None, 0
    for chunk in stream:
        n += 1
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
    chunks = validate_body(v, exchanges[-1].body, n)
    expect(text == "Let me check the weather.", f"chat: request 1 said {text!r}")
    expect(finish == "tool_calls", f"chat: request 1 finished with {finish!r}")
    expect(list(calls) == [0], f"chat: tool calls {calls}")
    call = calls[0]
    expect(call["name"] == "get_weather" and call["id"], f"chat: tool call {call}")
    expect(json.loads(call["arguments"]) == {"city": "Paris", "unit": "celsius"}, f"chat: arguments {call['arguments']!r}")
    expect(usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, f"chat: usage {usage}")
    expect(chunks[-1]["choices"] == [], "chat: the usage chunk is not last")

    # 2: the tool's result goes back; the SDK's stream helper accumulates the answer.
    messages.append(
        {
            "role": "assistant",
            "content": text,
            "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"sky": "sunny", "celsius": 22})})
    n = 0
    with client.chat.completions.stream(model="gpt-4o-mini", messages=messages, tools=TOOLS) as s:
        for event in s:
            n += event.type == "chunk"
        final = s.get_final_completion()
    chunks = validate_body(v, exchanges[-1].body, n)
    answer = final.choices[0].message
    expect(answer.content == "It is sunny and twenty-two degrees in Paris.", f"chat: request 2 said {answer.content!r}")
    expect(not answer.tool_calls, f"chat: request 2 called {answer.tool_calls}")
    expect(final.choices[0].finish_reason == "stop", f"chat: request 2 finished with {final.choices[0].finish_reason}")
    expect(all(c["choices"] for c in chunks), "chat: a usage chunk without include_usage")
    if len(exchanges) != 2:
        fail(f"chat: {len(exchanges)} HTTP requests, expected 2 (a retry?)")
    return [v]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_url", help="the fake's base URL, e.g. http://127.0.0.1:8788/v1")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "sk-conformance"))
    a = p.parse_args()
    main(lambda: run(a.base_url, a.api_key), "openai chat")
