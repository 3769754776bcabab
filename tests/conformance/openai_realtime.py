"""The official `openai` SDK's Realtime client against the Realtime fake, in both dialects (GA,
then beta), validating every server event's raw JSON against the SDK's own types.

    voxpipe fake realtime --port 8787 --config tests/conformance/realtime-fake.toml &
    OPENAI_API_KEY=sk-conformance python tests/conformance/openai_realtime.py http://127.0.0.1:8787/v1

Per dialect: `session.update` with a function tool and server VAD; 0.7 s of a tone then
silence (the fake's energy VAD hears it) -> a `get_weather` function call; its
`function_call_output` and `response.create` -> a long spoken answer; while that answer plays,
the caller talks over it (barge-in): the fake cancels the response (`turn_detected`), the
client truncates the assistant item at what it had received (`conversation.item.truncate`) and
retrieves it; the barge-in turn gets its own answer. Then an out-of-band text response, an
item deleted, the input buffer cleared, and an `error` for retrieving the deleted item. Exits 1 on any event the SDK's types
reject, any `error` event but the one provoked, or a conversation that goes otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import struct
import typing

import openai
from openai.types import realtime as ga_types
from openai.types.beta import realtime as beta_types

from common import Validator, expect, fail, main

RATE = 24_000
BYTES_PER_MS = RATE * 2 // 1000


def pcm(ms: int, tone: bool, offset: int = 0) -> bytes:
    """`ms` of PCM16 24 kHz mono: a 300 Hz tone at about -10 dBFS, or silence."""
    n = RATE * ms // 1000
    amp = 0.3 * 2**0.5 * 32767 if tone else 0.0
    samples = (int(amp * math.sin(2 * math.pi * 300 * (offset + i) / RATE)) for i in range(n))
    return b"".join(struct.pack("<h", s) for s in samples)


class Dialect(typing.NamedTuple):
    name: str
    union: object
    item_added: str
    audio_delta: str
    text_delta: str
    text_done: str
    session: dict[str, typing.Any]


TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

GA = Dialect(
    name="realtime GA",
    union=ga_types.RealtimeServerEvent,
    item_added="conversation.item.added",
    audio_delta="response.output_audio.delta",
    text_delta="response.output_text.delta",
    text_done="response.output_text.done",
    session={
        "type": "realtime",
        "instructions": "You are a weather assistant.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": {"model": "whisper-1"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 100},
            },
            "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin"},
        },
        "tools": [TOOL],
        "tool_choice": "auto",
    },
)

BETA = Dialect(
    name="realtime beta",
    union=beta_types.RealtimeServerEvent,
    item_added="conversation.item.created",
    audio_delta="response.audio.delta",
    text_delta="response.text.delta",
    text_done="response.text.done",
    session={
        "modalities": ["text", "audio"],
        "instructions": "You are a weather assistant.",
        "voice": "alloy",
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 100},
        "tools": [TOOL],
        "tool_choice": "auto",
    },
)


class Call:
    """One connection: sends through the SDK's typed helpers, reads raw frames and validates them."""

    def __init__(self, conn: typing.Any, dialect: Dialect, validator: Validator) -> None:
        self.conn, self.d, self.v = conn, dialect, validator
        self.audio_offset = 0

    def recv(self, error_ok: bool = False) -> dict[str, typing.Any]:
        raw = self.conn.recv_bytes()
        ev = self.v.check(raw)
        if ev["type"] == "error" and not error_ok:
            fail(f"{self.d.name}: the fake answered with an error event: {ev['error']}")
        # The SDK's own (non-validating) parse must agree on the type too.
        parsed = self.conn.parse_event(raw)
        expect(getattr(parsed, "type", None) == ev["type"], f"SDK parsed {ev['type']} as {parsed!r}")
        return ev

    def until(self, ty: str) -> list[dict[str, typing.Any]]:
        out = []
        while True:
            ev = self.recv()
            out.append(ev)
            if ev["type"] == ty:
                return out

    def speak(self, tone_ms: int, silence_ms: int) -> None:
        for ms, tone in ((tone_ms, True), (silence_ms, False)):
            for _ in range(ms // 100):
                chunk = pcm(100, tone, self.audio_offset)
                self.audio_offset += RATE // 10
                self.conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())


def types(events: list[dict[str, typing.Any]]) -> list[str]:
    return [e["type"] for e in events]


def run_dialect(client: openai.OpenAI, d: Dialect) -> Validator:
    v = Validator(d.name, d.union)
    connect = client.beta.realtime.connect if d is BETA else client.realtime.connect
    model = "gpt-4o-realtime-preview" if d is BETA else "gpt-realtime"
    with connect(model=model) as conn:
        call = Call(conn, d, v)
        expect(call.recv()["type"] == "session.created", f"{d.name}: the first event is not session.created")
        conn.session.update(session=d.session)
        updated = call.until("session.updated")[-1]["session"]
        expect(updated["tools"][0]["name"] == "get_weather", f"{d.name}: the tool is not in the session: {updated}")

        # Turn 1: the caller speaks; server VAD commits the turn; the model calls the tool.
        call.speak(700, 600)
        events = call.until("response.done")
        for ty in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                   "input_audio_buffer.committed", "response.function_call_arguments.done"):
            expect(ty in types(events), f"{d.name}: no {ty} in turn 1: {types(events)}")
        response = events[-1]["response"]
        expect(response["status"] == "completed", f"{d.name}: turn 1 ended {response['status']}")
        calls = [o for o in response["output"] if o["type"] == "function_call"]
        expect(len(calls) == 1 and calls[0]["name"] == "get_weather", f"{d.name}: no get_weather call: {response}")
        expect(json.loads(calls[0]["arguments"]) == {"city": "Paris"}, f"{d.name}: arguments {calls[0]['arguments']}")
        call_id = calls[0]["call_id"]

        # The tool's output, then the spoken answer.
        output = {"type": "function_call_output", "call_id": call_id, "output": json.dumps({"sky": "sunny", "celsius": 22})}
        conn.conversation.item.create(item=output)
        added = call.until(d.item_added)[-1]
        expect(added["item"]["type"] == "function_call_output", f"{d.name}: {added}")
        conn.response.create()

        # Barge-in: after a few audio deltas of the answer, the caller talks over it.
        item_id, received, deltas = None, 0, 0
        while deltas < 3:
            ev = call.recv()
            if ev["type"] == d.audio_delta:
                item_id = item_id or ev["item_id"]
                expect(ev["item_id"] == item_id, f"{d.name}: audio from two items")
                received += len(base64.b64decode(ev["delta"]))
                deltas += 1
            expect(ev["type"] != "response.done", f"{d.name}: the answer ended before the barge-in")
        call.speak(600, 600)
        played_ms = received // BYTES_PER_MS
        cancelled = truncated = None
        while cancelled is None:
            ev = call.recv()
            if ev["type"] == "input_audio_buffer.speech_started":
                # The client stops playback and truncates the item to what the caller heard.
                conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=played_ms)
            elif ev["type"] == "response.done":
                cancelled = ev["response"]
        expect(cancelled["status"] == "cancelled", f"{d.name}: the interrupted answer ended {cancelled['status']}")
        expect(cancelled["status_details"]["reason"] == "turn_detected", f"{d.name}: {cancelled['status_details']}")
        parts = [c for o in cancelled["output"] if o["type"] == "message" for c in o["content"]]
        expect(parts and all(p["type"] in ("audio", "output_audio") for p in parts), f"{d.name}: parts {parts}")
        done = None
        while truncated is None or done is None:
            ev = call.recv()
            if ev["type"] == "conversation.item.truncated":
                truncated = ev
            elif ev["type"] == "response.done":
                done = ev["response"]
        expect(truncated["item_id"] == item_id and truncated["audio_end_ms"] == played_ms,
               f"{d.name}: truncated {truncated}, wanted {item_id} at {played_ms} ms")
        expect(done["status"] == "completed", f"{d.name}: the barge-in turn's answer ended {done['status']}")
        said = [c.get("transcript") for o in done["output"] if o["type"] == "message" for c in o["content"]]
        expect(said == ["Sure, go ahead."], f"{d.name}: the barge-in turn's answer said {said}")

        # The truncated item keeps no transcript of what the caller did not hear.
        conn.conversation.item.retrieve(item_id=item_id)
        item = call.until("conversation.item.retrieved")[-1]["item"]
        expect(item["id"] == item_id, f"{d.name}: retrieved {item}")
        expect(all(not c.get("transcript") for c in item["content"]), f"{d.name}: transcript kept: {item}")

        # An out-of-band text response (a filler line): text events, nothing added to the conversation.
        text_only = {"modalities": ["text"]} if d is BETA else {"output_modalities": ["text"]}
        conn.response.create(response={"conversation": "none", "instructions": 'Say "One moment, please."', **text_only})
        events = call.until("response.done")
        for ty in (d.text_delta, d.text_done, "response.content_part.added", "response.content_part.done"):
            expect(ty in types(events), f"{d.name}: no {ty} in the text response: {types(events)}")
        expect(not any(t == d.item_added for t in types(events)), f"{d.name}: out of band, yet added to the conversation")
        text = next(e["text"] for e in events if e["type"] == d.text_done)
        expect(text == "One moment, please.", f"{d.name}: the text response said {text!r}")

        # Deleting an item, clearing the input buffer, and an error the client caused.
        conn.conversation.item.delete(item_id=item_id)
        expect(call.until("conversation.item.deleted")[-1]["item_id"] == item_id, f"{d.name}: deleted another item")
        conn.input_audio_buffer.clear()
        call.until("input_audio_buffer.cleared")
        conn.conversation.item.retrieve(item_id=item_id, event_id="evt_retrieve_deleted")
        error = call.recv(error_ok=True)
        expect(error["type"] == "error", f"{d.name}: retrieving a deleted item gave {error['type']}")
        expect(error["error"]["event_id"] == "evt_retrieve_deleted", f"{d.name}: the error names another event: {error}")
    return v


def run(base_url: str, api_key: str) -> list[Validator]:
    # The beta connection always uses wss:// unless told the WebSocket base URL.
    ws_url = "ws" + base_url.removeprefix("http") if base_url.startswith("http") else base_url
    client = openai.OpenAI(api_key=api_key, base_url=base_url, websocket_base_url=ws_url, max_retries=0)
    return [run_dialect(client, GA), run_dialect(client, BETA)]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_url", help="the fake's HTTP base URL, e.g. http://127.0.0.1:8787/v1")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "sk-conformance"))
    a = p.parse_args()
    main(lambda: run(a.base_url, a.api_key), "openai realtime")
