//! Timing helpers: deadlines in `tokio::select!` loops, and retry back-off shared by every
//! provider client.

use std::time::Duration;
use tokio::time::Instant;

/// Sleeps until `at`; forever when there is no `at` (a deadline that is not armed, as a
/// `select!` branch that never fires).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Exponential back-off before retry number `attempt` (1-based): `base`, 2×`base`, 4×`base`…
/// capped at 32×`base`. Never overflows, whatever `attempt` is.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(5))
}

/// A `Retry-After` header value in seconds, cut to `cap`. The HTTP-date form, negative,
/// non-finite or unparsable values give `None` (the caller's own back-off applies).
pub fn retry_after(value: &str, cap: Duration) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    // Compare before converting: `Duration::from_secs_f64` panics on huge values.
    Some(if secs >= cap.as_secs_f64() { cap } else { Duration::from_secs_f64(secs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_without_overflow() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 0), b);
        assert_eq!(backoff(b, 1), b);
        assert_eq!(backoff(b, 2), b * 2);
        assert_eq!(backoff(b, 3), b * 4);
        assert_eq!(backoff(b, 40), b * 32);
        assert_eq!(backoff(b, u32::MAX), b * 32);
        assert_eq!(backoff(Duration::MAX, 3), Duration::MAX);
    }

    #[test]
    fn retry_after_is_capped_before_conversion_and_refuses_nonsense() {
        let cap = Duration::from_secs(10);
        assert_eq!(retry_after(" 1.5 ", cap), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after("0", cap), Some(Duration::ZERO));
        assert_eq!(retry_after("1e20", cap), Some(cap));
        assert_eq!(retry_after("1e400", cap), None, "infinite");
        for bad in ["-1", "NaN", "inf", "", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(retry_after(bad, cap), None, "{bad}");
        }
    }
}
