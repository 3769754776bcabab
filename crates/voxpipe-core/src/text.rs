//! Quoting what a peer sent in an error message.

/// At most `max_bytes` of `text`: trimmed, on one line (control characters become spaces), cut
/// on a character boundary and ended with `…` when cut. For errors that quote a provider's
/// response body or a tool's output without flooding the log.
pub fn excerpt(text: &str, max_bytes: usize) -> String {
    let text = text.trim();
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s: String = text[..end].chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if end < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn cuts_on_a_char_boundary_and_keeps_one_line() {
        let e = excerpt(&"é".repeat(400), 301);
        assert!(e.ends_with('…'));
        assert_eq!(e.chars().count(), 151);
        assert_eq!(excerpt("  a\nb\r\tc  ", 100), "a b  c");
        assert_eq!(excerpt("short", 5), "short");
    }
}
