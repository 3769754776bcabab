//! Cuts streaming LLM text into speakable chunks.
//!
//! A TTS request per token would sound choppy and cost a round trip each; a request per reply
//! would delay the first audio until the LLM has finished. [`SentenceChunker`] cuts at sentence
//! ends as soon as they are certain, merges very short sentences ("Hi.") into the next one, and
//! falls back to clause boundaries (`,` `;` `:` `—`) and then word boundaries when a sentence
//! runs long, so the first audio can start while the LLM is still writing. The first chunk of a
//! reply can be cut sooner still ([`SentenceChunker::with_first_chunk_chars`]): the caller
//! waits for it in silence, while every later chunk is synthesised as the previous one plays.

/// Words that end with a period without ending a sentence (compared lowercase, without the
/// period).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "approx", "no", "inc", "ltd", "co",
    "corp", "dept", "est", "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "min", "max", "ave", "blvd", "rd", "gen", "gov", "sgt", "capt", "lt", "col",
];

/// Characters that may follow a sentence's final punctuation and still belong to it.
const CLOSERS: &[char] = &['"', '\'', ')', ']', '}', '\u{201D}', '\u{2019}', '\u{BB}'];

/// Default minimum chunk length in characters.
pub const DEFAULT_MIN_CHUNK_CHARS: usize = 20;
/// Default length in characters beyond which a sentence is cut at a clause boundary.
pub const DEFAULT_MAX_CHUNK_CHARS: usize = 150;

/// How a TTS stage cuts a reply's text into chunks: the `[stages.chunking]` table every TTS
/// stage takes.
///
/// ```toml
/// [[stages]]
/// kind = "tts.piper"
/// [stages.chunking]
/// min_chars = 4      # a reply starting "Yes," is spoken after a token or two
/// first_chars = 16   # cut the first chunk soon, for sooner first audio
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkingConfig {
    /// Minimum chunk length in characters: shorter sentences merge with the next. Default: 20.
    pub min_chars: usize,
    /// Length in characters beyond which a sentence is cut at a clause boundary. Default: 150.
    pub max_chars: usize,
    /// The first chunk of each reply is cut sooner, for sooner first audio: at its first clause
    /// boundary (`,` `;` `:` `—`) after `min_chars`, or at a word boundary once it is longer
    /// than this many characters (a sentence end still cuts it first). Later chunks follow
    /// `min_chars`/`max_chars`. Costs prosody at the cut. Default: none (the first chunk is like
    /// the others).
    pub first_chars: Option<usize>,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        Self { min_chars: DEFAULT_MIN_CHUNK_CHARS, max_chars: DEFAULT_MAX_CHUNK_CHARS, first_chars: None }
    }
}

impl ChunkingConfig {
    /// A chunker for one reply.
    pub fn chunker(&self) -> SentenceChunker {
        SentenceChunker::new(self.min_chars, self.max_chars).with_first_chunk_chars(self.first_chars)
    }
}

/// Incremental sentence chunker. Pure: no I/O, no clock.
///
/// Push text with [`push`](Self::push), take ready chunks with [`pop`](Self::pop), and at the
/// end of the reply take the rest with [`finish`](Self::finish). Chunks are trimmed of
/// surrounding whitespace and never empty.
#[derive(Debug, Clone)]
pub struct SentenceChunker {
    buf: String,
    min_chars: usize,
    max_chars: usize,
    /// The first chunk's length limit, when it is cut sooner than the others.
    first_chars: Option<usize>,
    /// A chunk has been taken with [`pop`](Self::pop): the first-chunk rule no longer applies.
    started: bool,
}

impl Default for SentenceChunker {
    fn default() -> Self {
        Self::new(DEFAULT_MIN_CHUNK_CHARS, DEFAULT_MAX_CHUNK_CHARS)
    }
}

impl SentenceChunker {
    /// A chunker that merges sentences shorter than `min_chars` characters into the next one and
    /// cuts sentences longer than `max_chars` at clause (or, failing that, word) boundaries.
    /// `max_chars` is raised to at least `min_chars + 1`.
    pub fn new(min_chars: usize, max_chars: usize) -> Self {
        Self {
            buf: String::new(),
            min_chars,
            max_chars: max_chars.max(min_chars + 1),
            first_chars: None,
            started: false,
        }
    }

    /// Cuts the first chunk of the reply sooner than the others, so the first audio starts
    /// sooner: at its first clause boundary (`,` `;` `:` `—`) with at least `min_chars` before
    /// it, or, with no clause boundary yet, at the last word boundary within `first_chars`
    /// characters once the text is longer than that. A sentence end still cuts it if it comes first. Later
    /// chunks follow the usual rules. `None` (the default) treats the first chunk like any
    /// other; `first_chars` is raised to at least `min_chars + 1`.
    ///
    /// A short first chunk costs prosody: the voice hears a clause, or part of one, on its own,
    /// and may pause or drop its pitch where the sentence goes on.
    pub fn with_first_chunk_chars(mut self, first_chars: Option<usize>) -> Self {
        self.first_chars = first_chars.map(|f| f.max(self.min_chars + 1));
        self
    }

    /// Appends streamed text.
    pub fn push(&mut self, text: &str) {
        if self.buf.is_empty() {
            self.buf.push_str(text.trim_start());
        } else {
            self.buf.push_str(text);
        }
    }

    /// Takes the next chunk that is ready to be spoken, if any.
    pub fn pop(&mut self) -> Option<String> {
        let sentence = self.sentence_cut();
        let cut = match (sentence, self.first_chunk_cut()) {
            (Some(s), Some(f)) => Some(s.min(f)),
            (s, f) => s.or(f),
        }
        .or_else(|| self.long_text_cut())?;
        self.started = true;
        Some(self.take(cut))
    }

    /// Ends the reply: takes everything left (trimmed), if anything.
    pub fn finish(&mut self) -> Option<String> {
        let rest = self.buf.trim();
        let out = (!rest.is_empty()).then(|| rest.to_string());
        self.buf.clear();
        out
    }

    /// Drops pending text (on interruption).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// True when no text is pending.
    pub fn is_empty(&self) -> bool {
        self.buf.trim().is_empty()
    }

    fn take(&mut self, cut: usize) -> String {
        let chunk = self.buf[..cut].trim().to_string();
        let rest_start = cut + (self.buf.len() - cut - self.buf[cut..].trim_start().len());
        self.buf.drain(..rest_start);
        chunk
    }

    fn chars_before(&self, byte: usize) -> usize {
        self.buf[..byte].trim().chars().count()
    }

    /// The first certain sentence end with at least `min_chars` before it.
    fn sentence_cut(&self) -> Option<usize> {
        let mut search = 0;
        while let Some(end) = self.next_sentence_end(search) {
            if self.chars_before(end) >= self.min_chars {
                return Some(end);
            }
            search = end;
        }
        None
    }

    /// Byte index just after the next certain sentence end at or after `from`.
    fn next_sentence_end(&self, from: usize) -> Option<usize> {
        let b = &self.buf;
        let mut iter = b[from..].char_indices().map(|(i, c)| (i + from, c)).peekable();
        while let Some((i, c)) = iter.next() {
            if c == '\n' {
                return Some(i + 1);
            }
            if !matches!(c, '.' | '!' | '?' | '\u{2026}') {
                continue;
            }
            // The whole punctuation run (`?!`, `...`) and closing quotes belong to the sentence.
            let mut end = i + c.len_utf8();
            let mut dots = usize::from(c == '.');
            let mut ellipsis = c == '\u{2026}';
            while let Some(&(j, d)) = iter.peek() {
                if matches!(d, '.' | '!' | '?' | '\u{2026}') || CLOSERS.contains(&d) {
                    dots += usize::from(d == '.');
                    ellipsis |= d == '\u{2026}';
                    end = j + d.len_utf8();
                    iter.next();
                } else {
                    break;
                }
            }
            // Undecided until we see what follows; a non-space means "3.5", "e.g.x", "a.m.".
            match b[end..].chars().next() {
                Some(n) if n.is_whitespace() => {}
                _ => continue,
            }
            if ellipsis || dots >= 2 {
                // "Well... I think" ends a sentence; "wait... what" does not.
                match b[end..].trim_start().chars().next() {
                    Some(n) if n.is_uppercase() => return Some(end),
                    _ => continue,
                }
            }
            if c == '.' && dots == 1 && is_abbreviation(&b[..i]) {
                continue;
            }
            return Some(end);
        }
        None
    }

    /// The first chunk of a reply, when it is cut sooner (see
    /// [`with_first_chunk_chars`](Self::with_first_chunk_chars)): the first clause boundary
    /// with at least `min_chars` before it; else, once the text is longer than the first-chunk
    /// limit, the last word boundary within it (or the first one past it).
    fn first_chunk_cut(&self) -> Option<usize> {
        let limit_chars = self.first_chars.filter(|_| !self.started)?;
        let mut chars = self.buf.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let after = i + c.len_utf8();
            let next_is_space = chars.peek().is_some_and(|&(_, n)| n.is_whitespace());
            if (c == '\u{2014}' || (matches!(c, ',' | ';' | ':') && next_is_space))
                && self.chars_before(after) >= self.min_chars
            {
                return Some(after);
            }
        }
        if self.buf.trim_end().chars().count() <= limit_chars {
            return None;
        }
        // Word boundaries with at least `min_chars` before them: the last within the limit, or
        // the first past it (a long word must not hold the first chunk back).
        let mut words = self
            .buf
            .char_indices()
            .filter(|&(i, c)| c.is_whitespace() && self.chars_before(i) >= self.min_chars)
            .map(|(i, _)| (i, self.chars_before(i)));
        let first = words.next()?;
        let within = std::iter::once(first).chain(words).take_while(|&(_, n)| n <= limit_chars).last();
        Some(within.unwrap_or(first).0)
    }

    /// When the pending text is longer than `max_chars` with no sentence end: the last clause
    /// boundary, else the last word boundary, within the first `max_chars` characters.
    fn long_text_cut(&self) -> Option<usize> {
        if self.buf.trim_end().chars().count() <= self.max_chars {
            return None;
        }
        let limit = self.buf.char_indices().nth(self.max_chars).map_or(self.buf.len(), |(i, _)| i);
        let window = &self.buf[..limit];
        let mut clause = None;
        let mut word = None;
        let mut chars = window.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let after = i + c.len_utf8();
            let next_is_space = chars.peek().is_some_and(|&(_, n)| n.is_whitespace());
            let long_enough = self.chars_before(after) >= self.min_chars;
            if long_enough && (c == '\u{2014}' || (matches!(c, ',' | ';' | ':') && next_is_space)) {
                clause = Some(after);
            }
            if long_enough && c.is_whitespace() {
                word = Some(i);
            }
        }
        clause.or(word)
    }
}

/// Whether the word just before a period is an abbreviation or an initial.
fn is_abbreviation(before: &str) -> bool {
    let word = before.rsplit(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    if word.is_empty() {
        return false;
    }
    // "e.g", "i.e", "U.S": internal periods.
    if word.contains('.') {
        return true;
    }
    let mut letters = word.chars();
    // A single letter is an initial ("J. Smith").
    if letters.next().is_some_and(char::is_alphabetic) && letters.next().is_none() {
        return true;
    }
    let lower = word.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_table_defaults_each_key_and_rejects_unknown_ones() {
        let c: ChunkingConfig = serde_json::from_str(r#"{"first_chars": 16}"#).unwrap();
        assert_eq!(c, ChunkingConfig { first_chars: Some(16), ..ChunkingConfig::default() });
        assert_eq!((c.min_chars, c.max_chars), (DEFAULT_MIN_CHUNK_CHARS, DEFAULT_MAX_CHUNK_CHARS));
        let e = serde_json::from_str::<ChunkingConfig>(r#"{"min_chunk_chars": 4}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `min_chunk_chars`"), "{e}");
        let mut chunker = ChunkingConfig { min_chars: 4, max_chars: 50, first_chars: Some(16) }.chunker();
        chunker.push("Yes, we do offer free returns within thirty days.");
        assert_eq!(chunker.pop().as_deref(), Some("Yes,"));
    }

    fn feed(chunker: &mut SentenceChunker, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        // Token-sized pieces, as an LLM streams them.
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(3) {
            chunker.push(&piece.iter().collect::<String>());
            while let Some(c) = chunker.pop() {
                out.push(c);
            }
        }
        out
    }

    fn all(text: &str) -> Vec<String> {
        let mut c = SentenceChunker::default();
        let mut out = feed(&mut c, text);
        out.extend(c.finish());
        out
    }

    #[test]
    fn cuts_at_sentence_ends_as_soon_as_they_are_certain() {
        let mut c = SentenceChunker::default();
        let out = feed(&mut c, "The weather is lovely today. Shall we go for a walk? I would");
        assert_eq!(out, ["The weather is lovely today.", "Shall we go for a walk?"]);
        c.push(" like that!");
        assert_eq!(c.pop(), None, "no space after the final '!': not certain yet");
        assert_eq!(c.finish().as_deref(), Some("I would like that!"));
        assert!(c.is_empty());
    }

    #[test]
    fn abbreviations_and_initials_do_not_end_sentences() {
        let out = all("Please see Dr. Smith about it, e.g. tomorrow at noon. J. R. Tolkien wrote this one.");
        assert_eq!(
            out,
            ["Please see Dr. Smith about it, e.g. tomorrow at noon.", "J. R. Tolkien wrote this one."]
        );
    }

    #[test]
    fn decimals_and_versions_do_not_end_sentences() {
        let out = all("The price went up by 3.5 percent in 2024. Version 2.0.1 fixes that bug entirely.");
        assert_eq!(
            out,
            ["The price went up by 3.5 percent in 2024.", "Version 2.0.1 fixes that bug entirely."]
        );
    }

    #[test]
    fn ellipsis_ends_a_sentence_only_before_a_capital() {
        let out = all("I was thinking... maybe we could go. Well\u{2026} Then again, maybe we should not.");
        assert_eq!(
            out,
            ["I was thinking... maybe we could go.", "Well\u{2026} Then again, maybe we should not."]
        );
    }

    #[test]
    fn short_sentences_merge_with_the_next_unless_the_reply_ends() {
        assert_eq!(all("Hi. How are you?"), ["Hi. How are you?"]);
        let out = all("Hi. How can I help you with your order? Sure.");
        assert_eq!(out, ["Hi. How can I help you with your order?", "Sure."]);
        assert_eq!(all("Hi."), ["Hi."]);
    }

    #[test]
    fn long_text_is_split_at_the_last_clause_boundary() {
        let mut c = SentenceChunker::new(20, 60);
        let text = "When you get to the station, turn left at the bakery, walk past the park; then \
                    continue for a while";
        let out = feed(&mut c, text);
        assert_eq!(out, ["When you get to the station, turn left at the bakery,"]);
        assert_eq!(c.finish().as_deref(), Some("walk past the park; then continue for a while"));
    }

    #[test]
    fn long_text_without_punctuation_is_split_at_a_word_boundary() {
        let mut c = SentenceChunker::new(10, 30);
        let out = feed(&mut c, "one two three four five six seven eight nine ten");
        assert_eq!(out[0], "one two three four five six");
        assert!(out.iter().all(|c| c.chars().count() <= 30));
    }

    #[test]
    fn newlines_end_chunks_and_whitespace_is_trimmed() {
        let out = all("  Here are the options for you:\n- the red one\n- the blue one  ");
        assert_eq!(out, ["Here are the options for you:", "- the red one\n- the blue one"]);
    }

    fn first_chunk(first: usize) -> SentenceChunker {
        SentenceChunker::new(20, 150).with_first_chunk_chars(Some(first))
    }

    #[test]
    fn the_first_chunk_is_cut_at_its_first_clause_boundary_later_ones_as_usual() {
        let mut c = first_chunk(50);
        let text = "Your order shipped on Monday, it is with the courier now, and it should reach \
                    you by Friday. Anything else?";
        let mut out = feed(&mut c, text);
        out.extend(c.finish());
        assert_eq!(
            out,
            [
                "Your order shipped on Monday,",
                "it is with the courier now, and it should reach you by Friday.",
                "Anything else?"
            ],
            "only the first chunk is cut at a clause; later clauses stay together"
        );
    }

    #[test]
    fn the_first_chunk_waits_for_min_chars_and_is_cut_at_a_word_once_it_is_long() {
        // "Sure," is shorter than min_chars: no cut there; no later clause boundary, so the
        // first chunk ends at the last word boundary within its 30 characters.
        let mut c = first_chunk(30);
        let out = feed(&mut c, "Sure, I can check the status of that order for you right away");
        assert_eq!(out, ["Sure, I can check the status"]);
        assert_eq!(c.finish().as_deref(), Some("of that order for you right away"));

        // A sentence end before the first clause boundary still cuts first.
        let mut c = first_chunk(60);
        let out = feed(&mut c, "Thank you for waiting so long. Your order, which");
        assert_eq!(out, ["Thank you for waiting so long."]);
        assert_eq!(c.finish().as_deref(), Some("Your order, which"), "the second chunk waits as usual");
    }

    #[test]
    fn a_comma_is_a_clause_boundary_only_once_a_space_follows() {
        let mut c = first_chunk(50);
        c.push("The total comes to 1,");
        assert_eq!(c.pop(), None, "\"1,\" may be \"1,000\"");
        c.push("000 dollars and 50 cents, due");
        assert_eq!(c.pop().as_deref(), Some("The total comes to 1,000 dollars and 50 cents,"));
    }

    #[test]
    fn without_a_first_chunk_limit_the_first_chunk_is_like_the_others() {
        let text = "Your order shipped on Monday, it is with the courier now.";
        assert_eq!(all(text), [text]);
        let mut c = SentenceChunker::new(20, 150).with_first_chunk_chars(None);
        let mut out = feed(&mut c, text);
        out.extend(c.finish());
        assert_eq!(out, [text]);
        // A limit below min_chars is raised to min_chars + 1.
        let mut c = SentenceChunker::new(20, 150).with_first_chunk_chars(Some(5));
        let out = feed(&mut c, "one two three four five six seven eight");
        assert_eq!(out, ["one two three four five"]);
    }

    #[test]
    fn clear_drops_pending_text() {
        let mut c = SentenceChunker::default();
        c.push("Something half said");
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.finish(), None);
    }
}
