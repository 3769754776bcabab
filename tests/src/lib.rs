//! End-to-end tests live in `tests/*.rs`; this library holds their shared helpers.
