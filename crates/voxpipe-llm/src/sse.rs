//! Server-sent events (the WHATWG `text/event-stream` format), parsed incrementally with a
//! size cap.
//!
//! Both providers stream their responses as SSE. The parser is fed the body as it arrives, in
//! chunks split anywhere (inside a line, between a CR and its LF, inside a UTF-8 character):
//! the events it yields do not depend on where the chunks were split. Lines end with CRLF, LF
//! or CR; a leading byte-order mark is skipped; `data:` lines are joined with `\n`; comments
//! (`:`), `retry:` and unknown fields are ignored; an event is dispatched at a blank line, and
//! an event the stream ends before completing is dropped. Bytes that are not UTF-8 become
//! U+FFFD.
//!
//! Nothing grows without bound: a line longer than the limit, or an event whose data is, fails
//! the stream with [`TooLarge`] instead of buffering whatever a broken or hostile server sends.

use futures_util::{Stream, StreamExt};
use std::collections::VecDeque;
use std::fmt::Display;

/// The largest SSE line, and the largest data of one event, accepted: 4 MiB. A chat chunk or
/// an Anthropic event is a few hundred bytes (tool arguments arrive in many small pieces), so
/// this is far above anything a provider sends, yet keeps a server that never ends its line
/// (or its event) from growing the buffer until the process runs out of memory.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; `message` when the event had none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last event id seen (`id:`), as the spec keeps it across events.
    pub id: String,
}

/// A line or an event's data exceeded the parser's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an SSE line or event is larger than the limit of {limit} bytes")]
pub struct TooLarge {
    /// The limit, bytes.
    pub limit: usize,
}

/// An incremental SSE parser.
#[derive(Debug)]
pub struct Parser {
    limit: usize,
    /// The current line, not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended with a CR: an LF opening the next one belongs to it.
    after_cr: bool,
    /// The first line has been read (a byte-order mark may only open the stream).
    started: bool,
    event: String,
    data: String,
    id: String,
    /// A limit was exceeded: the stream is unusable.
    failed: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser with the [`MAX_EVENT_BYTES`] limit.
    pub fn new() -> Self {
        Self::with_limit(MAX_EVENT_BYTES)
    }

    /// A parser that fails on a line, or an event's data, larger than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            line: Vec::new(),
            after_cr: false,
            started: false,
            event: String::new(),
            data: String::new(),
            id: String::new(),
            failed: false,
        }
    }

    /// Feeds the next bytes of the stream; events completed by them are appended to `out`.
    ///
    /// # Errors
    /// [`TooLarge`] when a line or an event's data exceeds the limit (events completed before
    /// it are still in `out`); every later call fails too.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if self.failed {
            return Err(TooLarge { limit: self.limit });
        }
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend_line(&rest[..end])?;
            let line = std::mem::take(&mut self.line);
            let result = self.take_line(&line, out);
            self.line = line;
            self.line.clear();
            result?;
            let tail = &rest[end + 1..];
            rest = match (rest[end], tail.first()) {
                (b'\r', Some(b'\n')) => &tail[1..],
                (b'\r', None) => {
                    self.after_cr = true;
                    tail
                }
                _ => tail,
            };
        }
        self.extend_line(rest)
    }

    fn extend_line(&mut self, piece: &[u8]) -> Result<(), TooLarge> {
        if self.line.len() + piece.len() > self.limit {
            return Err(self.fail());
        }
        self.line.extend_from_slice(piece);
        Ok(())
    }

    fn fail(&mut self) -> TooLarge {
        self.failed = true;
        self.line = Vec::new();
        self.data = String::new();
        TooLarge { limit: self.limit }
    }

    /// Interprets one complete line.
    fn take_line(&mut self, mut line: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ".as_slice()).unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(self.fail());
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            b"id" if !value.contains(&0) => self.id = String::from_utf8_lossy(value).into_owned(),
            // `retry` (reconnection is not ours to do) and unknown fields.
            _ => {}
        }
        Ok(())
    }

    /// The body ended: dispatches the event in progress when the body ended right after a
    /// line end (every line of it is whole) and the event only lacks its blank line. A body
    /// that ended inside a line was cut, and nothing of that event is dispatched. The spec
    /// drops both; Gemini's recorded streams end their last event without the blank line
    /// (`shared/specs/google/examples`), and its SDK reads the stream line by line.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        if !self.failed && self.line.is_empty() {
            self.dispatch(out);
        }
        self.event.clear();
        self.data.clear();
        self.line.clear();
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        let event = if event.is_empty() { "message".to_string() } else { event };
        out.push(Event { event, data, id: self.id.clone() });
    }
}

/// Why reading events from a body stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// A line or event exceeded [`MAX_EVENT_BYTES`].
    TooLarge(TooLarge),
    /// The body itself failed (connection reset, decoding).
    Body(String),
}

/// Events read from a response body as it arrives.
pub(crate) struct EventReader<S> {
    body: S,
    parser: Parser,
    ready: VecDeque<Event>,
    error: Option<ReadError>,
    ended: bool,
    /// Dispatch a last event the body ended without its blank line ([`Parser::finish`]).
    keep_last: bool,
}

impl<S> std::fmt::Debug for EventReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader").field("ready", &self.ready.len()).field("ended", &self.ended).finish()
    }
}

impl<S, B, E> EventReader<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: Display,
{
    /// A reader of `body` with the [`MAX_EVENT_BYTES`] limit.
    pub fn new(body: S) -> Self {
        Self::with_parser(body, Parser::new())
    }

    /// A reader of `body` parsed by `parser`.
    pub fn with_parser(body: S, parser: Parser) -> Self {
        Self { body, parser, ready: VecDeque::new(), error: None, ended: false, keep_last: false }
    }

    /// Also yields a last event the body ends without its blank line, when the body ends at a
    /// line end ([`Parser::finish`]).
    pub fn keep_unterminated_last_event(mut self, keep: bool) -> Self {
        self.keep_last = keep;
        self
    }

    /// The next event; `None` once the body has ended (an incomplete last event is dropped).
    /// Cancel-safe: the only await is the body's next chunk.
    pub async fn next(&mut self) -> Option<Result<Event, ReadError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if let Some(error) = self.error.take() {
                self.ended = true;
                return Some(Err(error));
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    let mut events = Vec::new();
                    let result = self.parser.push(chunk.as_ref(), &mut events);
                    self.ready.extend(events);
                    if let Err(e) = result {
                        self.error = Some(ReadError::TooLarge(e));
                    }
                }
                Some(Err(e)) => self.error = Some(ReadError::Body(e.to_string())),
                None => {
                    self.ended = true;
                    if self.keep_last {
                        let mut events = Vec::new();
                        self.parser.finish(&mut events);
                        self.ready.extend(events);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]], limit: usize) -> (Vec<Event>, Result<(), TooLarge>) {
        let mut p = Parser::with_limit(limit);
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = p.push(c, &mut out) {
                return (out, Err(e));
            }
        }
        (out, Ok(()))
    }

    fn ev(event: &str, data: &str, id: &str) -> Event {
        Event { event: event.into(), data: data.into(), id: id.into() }
    }

    #[test]
    fn the_spec_examples_parse() {
        let (out, r) = parse(&[b"data: YHOO\ndata: +2\ndata: 10\n\n: comment\nevent: add\ndata: 73857293\nid: 7\n\nevent: remove\ndata: 2153\r\n\r\nretry: 5\ndata\n\ndata:\n\n"], 1 << 20);
        assert_eq!(r, Ok(()));
        assert_eq!(
            out,
            [
                ev("message", "YHOO\n+2\n10", ""),
                ev("add", "73857293", "7"),
                ev("remove", "2153", "7"),
                ev("message", "", "7"),
                ev("message", "", "7"),
            ]
        );
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_line_end() {
        let (out, _) = parse(&[b"data: a\r", b"\ndata: b\r", b"", b"\n\r", b"\n"], 1 << 20);
        assert_eq!(out, [ev("message", "a\nb", "")]);
    }

    #[test]
    fn a_bom_is_skipped_only_at_the_start_even_when_split() {
        let (out, _) = parse(&[b"\xEF\xBB", b"\xBFdata: x\n\n\xEF\xBB\xBFdata: y\n\n"], 1 << 20);
        assert_eq!(out, [ev("message", "x", "")], "a BOM later is part of a field name");
    }

    #[test]
    fn an_unfinished_event_is_dropped_and_invalid_utf8_is_replaced() {
        let (out, _) = parse(&[b"data: \xff\xfe ok\n\ndata: never dispatched\n"], 1 << 20);
        assert_eq!(out, [ev("message", "\u{FFFD}\u{FFFD} ok", "")]);
    }

    #[test]
    fn finish_dispatches_a_last_event_without_its_blank_line_only_when_its_lines_are_whole() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        p.push(b"data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\r\n", &mut out).unwrap();
        assert_eq!(out, [ev("message", "{\"a\":1}", "")]);
        p.finish(&mut out);
        assert_eq!(out[1], ev("message", "{\"b\":2}", ""));
        // Cut inside a line: the event is dropped.
        let mut p = Parser::new();
        let mut out = Vec::new();
        p.push(b"data: {\"a\":1}\ndata: {\"b\"", &mut out).unwrap();
        p.finish(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_line_or_event_over_the_limit_fails_after_the_events_before_it() {
        let (out, r) = parse(&[b"data: 1\n\ndata: ", &[b'x'; 20]], 16);
        assert_eq!((out, r), (vec![ev("message", "1", "")], Err(TooLarge { limit: 16 })));
        // Many short data lines add up to one event.
        let (out, r) = parse(&[b"data: 12345\ndata: 12345\ndata: 12345\n"], 16);
        assert_eq!((out, r), (vec![], Err(TooLarge { limit: 16 })));
        let mut p = Parser::with_limit(16);
        assert!(p.push(&[b'x'; 17], &mut Vec::new()).is_err());
        assert!(p.push(b"\n\n", &mut Vec::new()).is_err(), "a failed parser stays failed");
    }
}
