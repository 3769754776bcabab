//! Which pipeline a call gets, in this order: the webhook's route (`/twilio/voice/NAME` or
//! `?pipeline=NAME`), a caller-number pattern, then a weighted draw (online A/B), sticky per
//! caller number when `[routing] sticky` is set. The choice and its reason travel to the
//! stream as `<Parameter>`s and are written into the call's events and metrics.

use crate::config::ServeConfig;
use std::hash::{Hash, Hasher};

/// A pipeline chosen for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// The pipeline's serve name.
    pub pipeline: String,
    /// `route`, `caller`, `weighted`, `sticky`.
    pub by: String,
}

/// The routing table.
#[derive(Debug, Clone)]
pub struct Router {
    entries: Vec<(String, u32, Vec<String>)>,
    sticky: bool,
}

impl Router {
    /// The table of `config`.
    pub fn new(config: &ServeConfig) -> Self {
        Self {
            entries: config.pipelines.iter().map(|p| (p.name.clone(), p.weight, p.callers.clone())).collect(),
            sticky: config.routing.sticky,
        }
    }

    /// Picks for a call from `from`, with the pipeline `named` by the webhook if any. `None`:
    /// the named pipeline does not exist.
    pub fn pick(&self, named: Option<&str>, from: &str) -> Option<Pick> {
        if let Some(name) = named {
            return self
                .entries
                .iter()
                .any(|(n, ..)| n == name)
                .then(|| Pick { pipeline: name.into(), by: "route".into() });
        }
        for (name, _, callers) in &self.entries {
            if callers.iter().any(|p| matches(p, from)) {
                return Some(Pick { pipeline: name.clone(), by: "caller".into() });
            }
        }
        let total: u64 = self.entries.iter().map(|e| e.1 as u64).sum();
        if total == 0 {
            return self.entries.first().map(|e| Pick { pipeline: e.0.clone(), by: "default".into() });
        }
        let draw = if self.sticky {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            from.hash(&mut h);
            h.finish()
        } else {
            use std::hash::BuildHasher;
            // A fresh RandomState is randomly keyed: a cheap draw, no rand crate needed.
            std::collections::hash_map::RandomState::new().hash_one(0u8)
        } % total;
        let mut acc = 0u64;
        for (name, w, _) in &self.entries {
            acc += *w as u64;
            if draw < acc {
                return Some(Pick {
                    pipeline: name.clone(),
                    by: if self.sticky { "sticky" } else { "weighted" }.into(),
                });
            }
        }
        None
    }
}

/// `pattern` is an exact number, or a prefix ending in `*`.
fn matches(pattern: &str, number: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => number.starts_with(prefix),
        None => pattern == number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(sticky: bool) -> Router {
        Router {
            entries: vec![
                ("a".into(), 1, vec!["+1555*".into()]),
                ("b".into(), 3, vec![]),
                ("c".into(), 0, vec![]),
            ],
            sticky,
        }
    }

    #[test]
    fn route_then_caller_then_weights() {
        let r = router(false);
        assert_eq!(r.pick(Some("c"), "+1555").unwrap(), Pick { pipeline: "c".into(), by: "route".into() });
        assert_eq!(r.pick(Some("nope"), "+1"), None);
        assert_eq!(r.pick(None, "+15550001").unwrap().by, "caller");
        let mut counts = std::collections::HashMap::new();
        for _ in 0..4000 {
            *counts.entry(r.pick(None, "+44").unwrap().pipeline).or_insert(0) += 1;
        }
        assert!(!counts.contains_key("c"), "weight 0 is never drawn");
        let b = counts["b"] as f64 / 4000.0;
        assert!((0.68..0.82).contains(&b), "b drawn {b}");
        let s = router(true);
        let first = s.pick(None, "+4411").unwrap();
        assert!((0..50).all(|_| s.pick(None, "+4411").unwrap() == first), "sticky");
        assert_eq!(first.by, "sticky");
    }
}
