//! Word error rate: how `voxpipe ab` scores transcripts, and how the ASR tests judge theirs.

/// Lowercases, turns punctuation into spaces (keeping apostrophes inside words) and splits
/// into words.
pub fn normalize_words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c.to_lowercase().next().unwrap_or(c) } else { ' ' })
        .collect();
    cleaned.split_whitespace().map(|w| w.trim_matches('\'').to_string()).filter(|w| !w.is_empty()).collect()
}

/// Word error rate of `hypothesis` against `reference`: (substitutions + deletions +
/// insertions) / reference words, after [`normalize_words`]. An empty reference gives 0 for
/// an empty hypothesis and 1 otherwise.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (normalize_words(reference), normalize_words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(&r, &h) as f64 / r.len() as f64
}

/// Word-level edit distance and reference length, summed over several pairs, for a corpus
/// WER: `sum(errors) / sum(words)`.
pub fn errors_and_words(reference: &str, hypothesis: &str) -> (usize, usize) {
    let (r, h) = (normalize_words(reference), normalize_words(hypothesis));
    (edit_distance(&r, &h), r.len())
}

fn edit_distance(r: &[String], h: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[h.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_after_normalisation_has_no_errors() {
        assert_eq!(wer("Hello, world!", "hello world"), 0.0);
        assert_eq!(wer("It's fine.", "it's FINE"), 0.0);
    }

    #[test]
    fn counts_substitutions_deletions_and_insertions() {
        assert_eq!(wer("the cat sat", "the bat sat"), 1.0 / 3.0);
        assert_eq!(wer("the cat sat", "the sat"), 1.0 / 3.0);
        assert_eq!(wer("the cat sat", "the cat sat down"), 1.0 / 3.0);
        assert_eq!(wer("a b c d", "x"), 1.0);
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "noise"), 1.0);
        assert_eq!(errors_and_words("one two", "one three four"), (2, 2));
    }
}
