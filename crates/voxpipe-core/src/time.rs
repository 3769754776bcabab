//! Timing helpers for `tokio::select!` loops.

use tokio::time::Instant;

/// Sleeps until `at`; forever when there is no `at` (a deadline that is not armed, as a
/// `select!` branch that never fires).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
