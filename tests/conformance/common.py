"""Shared by the conformance scripts: strict validation of raw server JSON against the official
SDKs' own pydantic models, per-type counts, and a clear failure exit.

The SDKs parse what they receive with `construct()`, which does not validate, so the scripts
keep each event's raw JSON and validate it here: the model is picked by the event's `type`
(the SDK unions are discriminated by it), validated in pydantic's strict JSON mode. Fields the SDK model does not
declare are accepted (the SDK's models allow extras, and the real services send some the types
lack, such as a GA session's `id`) but listed in the summary, so an invented field shows.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import sys
import traceback
import typing

import pydantic


class ConformanceError(Exception):
    """A server event or chunk the SDK's types reject, or a conversation that went wrong."""


def fail(message: str) -> typing.NoReturn:
    raise ConformanceError(message)


def expect(condition: object, message: str) -> None:
    if not condition:
        fail(message)


def union_members(union: object) -> tuple[type[pydantic.BaseModel], ...]:
    """The models of an SDK union such as `Annotated[Union[A, B, ...], PropertyInfo(...)]`."""
    args = typing.get_args(union)
    if typing.get_origin(union) is typing.Annotated:
        return union_members(args[0])
    if not args:
        return (typing.cast(type[pydantic.BaseModel], union),)
    out: list[type[pydantic.BaseModel]] = []
    for a in args:
        out.extend(union_members(a))
    return tuple(out)


def models_by_type(union: object, key: str = "type") -> dict[str, type[pydantic.BaseModel]]:
    """`key` literal -> model, for a union discriminated by `key` (or one model)."""
    table: dict[str, type[pydantic.BaseModel]] = {}
    for model in union_members(union):
        for literal in typing.get_args(model.model_fields[key].annotation):
            table[literal] = model
    return table


def extras(value: object, path: str = "") -> list[str]:
    """Paths of the fields a validated model kept as extras (fields the SDK does not know)."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        for key in (value.model_extra or {}):
            found.append(f"{path}.{key}" if path else key)
        for name in type(value).model_fields:
            found.extend(extras(getattr(value, name), f"{path}.{name}" if path else name))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found.extend(extras(v, f"{path}[{i}]"))
    elif isinstance(value, dict):
        for k, v in value.items():
            found.extend(extras(v, f"{path}.{k}"))
    return found


class Validator:
    """Validates raw JSON events against one SDK union (or one model) and counts them by their
    `key` field (`type`, or `object` for chat chunks)."""

    def __init__(
        self,
        name: str,
        union: object,
        key: str = "type",
        label: typing.Callable[[dict[str, typing.Any]], str] | None = None,
    ) -> None:
        self.name, self.key, self.label = name, key, label
        self.table = models_by_type(union, key)
        self.counts: collections.Counter[str] = collections.Counter()
        self.undeclared: set[str] = set()
        # Events outside the SDK's union that the SDK skips by design, checked by the script.
        self.skipped: collections.Counter[str] = collections.Counter()

    def check(self, raw: str | bytes, what: str = "event") -> dict[str, typing.Any]:
        """Validates one raw JSON document; returns it decoded. Fails on anything the SDK's
        model rejects or does not declare."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            data = json.loads(text)
        except ValueError as e:
            fail(f"{self.name}: a {what} is not JSON ({e}): {text[:300]}")
        if not isinstance(data, dict):
            fail(f"{self.name}: a {what} is not a JSON object: {text[:300]}")
        ty = data.get(self.key)
        model = self.table.get(ty) if isinstance(ty, str) else None
        if model is None:
            fail(f"{self.name}: {what} {self.key} {ty!r} is not one the SDK knows: {short(text)}")
        try:
            parsed = model.model_validate_json(text, strict=True)
        except pydantic.ValidationError as e:
            fail(f"{self.name}: {what} {ty!r} does not validate as {model.__name__}:\n{e}\nraw: {short(text)}")
        for path in extras(parsed):
            self.undeclared.add(f"{ty}: " + re.sub(r"\[\d+\]", "[]", path))
        self.counts[self.label(data) if self.label else str(ty)] += 1
        return data

    def summary(self) -> str:
        total = sum(self.counts.values())
        lines = [f"{self.name}: {total} validated against the SDK's types"]
        lines += [f"  {n:4d} {t}" for t, n in sorted(self.counts.items())]
        lines += [f"  {n:4d} {t} (not in the SDK's types: the SDK skips it; checked by the script)" for t, n in sorted(self.skipped.items())]
        if self.undeclared:
            lines.append("  fields the SDK's models do not declare (they accept extras; the real service sends some):")
            lines += [f"    {u}" for u in sorted(self.undeclared)]
        return "\n".join(lines)


def short(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def parse_sse(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each event of a text/event-stream body."""
    out: list[tuple[str | None, str]] = []
    text = body.decode()
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            else:
                fail(f"unexpected SSE field {field!r} in: {short(block)}")
        if data:
            out.append((event, "\n".join(data)))
        elif event is not None:
            fail(f"an SSE event without data: {short(block)}")
    return out


class Exchange(typing.NamedTuple):
    """One HTTP exchange as the SDK made it: request headers (lower-case names), status, and
    the raw response body (filled as the SDK reads it)."""

    headers: dict[str, str]
    status: int
    body: bytearray


def tee_client(httpx_client_class: type) -> tuple[typing.Any, list[Exchange]]:
    """An SDK http client (`openai.DefaultHttpxClient` / `anthropic.DefaultHttpxClient`) that
    also records each exchange, the response body raw as the SDK reads it."""
    import httpx2

    exchanges: list[Exchange] = []

    class Tee(httpx2.SyncByteStream):
        def __init__(self, inner: typing.Any, buf: bytearray) -> None:
            self.inner, self.buf = inner, buf

        def __iter__(self) -> typing.Iterator[bytes]:
            for chunk in self.inner:
                self.buf.extend(chunk)
                yield chunk

        def close(self) -> None:
            self.inner.close()

    class Transport(httpx2.HTTPTransport):
        def handle_request(self, request: typing.Any) -> typing.Any:
            response = super().handle_request(request)
            headers = {k.lower(): v for k, v in request.headers.items()}
            exchange = Exchange(headers, response.status_code, bytearray())
            exchanges.append(exchange)
            response.stream = Tee(response.stream, exchange.body)
            return response

    return httpx_client_class(transport=Transport()), exchanges


def main(run: typing.Callable[[], list[Validator]], title: str, timeout_s: int = 60) -> None:
    """Runs `run`, prints the per-type summary, and exits 1 with a clear message on failure,
    or when it has not finished within `timeout_s` (an event that never came)."""

    def too_slow(*_: object) -> None:
        raise ConformanceError(f"not finished within {timeout_s} s (waiting for something that did not come)")

    signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(timeout_s)
    try:
        validators = run()
    except ConformanceError as e:
        print(f"CONFORMANCE FAILURE ({title}): {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # the SDK refused a reply, the connection broke, …
        traceback.print_exc()
        print(f"CONFORMANCE FAILURE ({title}): {type(e).__module__}.{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    for v in validators:
        print(v.summary())
    print(f"{title}: OK")
