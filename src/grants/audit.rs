//! Which audit events are written, as pure data: a stranger can cause refusals at will (a
//! wrong claim secret, a spent invite, an unknown certificate), and each one used to be an
//! fsync'd line (5,712 in 10 s from one session, until the disk was full). Refusals of one
//! kind are written once per window; the ones in between are counted and summed up in one
//! line when the window is over. Everything else (claims, lends, revocations, expiries) is
//! always written.

use std::collections::HashMap;

use super::model::Time;

/// One refusal of a kind per minute is written; the rest of that minute is a count.
pub const WINDOW_SECS: Time = 60;
/// Kinds of refusal remembered at most (a kind is event + detail, which are pipe's own
/// strings, so there are a handful; the cap is a guard, not a limit anyone reaches).
const MAX_KINDS: usize = 64;

/// Whether an event is a refusal (aggregated) or a change (always written).
pub fn is_refusal(event: &str) -> bool {
    event == "refused" || event.ends_with("-refused")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub event: String,
    pub detail: String,
    pub count: u64,
    pub since: Time,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    since: Time,
    suppressed: u64,
}

#[derive(Debug, Default)]
pub struct AuditLimiter {
    windows: HashMap<(String, String), Window>,
}

impl AuditLimiter {
    /// An event at `at`: `true` if it is to be written now. Refusals of a kind already written
    /// in this window are counted instead. Call `due(at)` first, so that a window that is
    /// over is summed up before a new one opens.
    pub fn admit(&mut self, event: &str, detail: &str, at: Time) -> bool {
        if !is_refusal(event) {
            return true;
        }
        let key = (event.to_string(), detail.to_string());
        match self.windows.get_mut(&key) {
            Some(w) if at < w.since + WINDOW_SECS => {
                w.suppressed += 1;
                false
            }
            _ => {
                if self.windows.len() >= MAX_KINDS && !self.windows.contains_key(&key) {
                    return false;
                }
                self.windows.insert(
                    key,
                    Window {
                        since: at,
                        suppressed: 0,
                    },
                );
                true
            }
        }
    }

    /// The counts of windows that are over at `at`, to be written as summary lines; those
    /// windows are forgotten.
    pub fn due(&mut self, at: Time) -> Vec<Suppressed> {
        let mut out = Vec::new();
        self.windows.retain(|(event, detail), w| {
            if at < w.since + WINDOW_SECS {
                return true;
            }
            if w.suppressed > 0 {
                out.push(Suppressed {
                    event: event.clone(),
                    detail: detail.clone(),
                    count: w.suppressed,
                    since: w.since,
                });
            }
            false
        });
        out.sort_by(|a, b| (a.since, &a.event).cmp(&(b.since, &b.event)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_one_line_and_a_count_a_minute() {
        let mut a = AuditLimiter::default();
        let mut written = 0;
        for i in 0..5712u64 {
            if a.admit(
                "claimed-refused",
                "refused: wrong claim secret",
                1000 + i / 600,
            ) {
                written += 1;
            }
        }
        assert_eq!(written, 1, "one line for the first 10 s");
        assert!(a.due(1030).is_empty(), "the window is still open");
        let due = a.due(1060);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 5711);
        assert_eq!(due[0].since, 1000);
        assert!(a.due(2000).is_empty(), "summed up once");
    }

    #[test]
    fn changes_are_always_written_and_kinds_are_separate() {
        let mut a = AuditLimiter::default();
        for _ in 0..10 {
            assert!(a.admit("revoked", "", 5));
            assert!(a.admit("expired", "", 5));
        }
        assert!(a.admit("refused", "no grant", 5));
        assert!(a.admit("borrowed-refused", "spent", 5));
        assert!(!a.admit("refused", "no grant", 6));
        assert!(
            a.admit("refused", "no grant", 5 + WINDOW_SECS),
            "a new window"
        );
    }
}
