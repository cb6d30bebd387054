//! Which sessions may hold a viewer slot, as pure data: a stranger must not be able to take
//! every slot and lock the owner out.
//!
//! A session starts *unanswered* (the device built a pipeline and sent an offer), becomes
//! *unverified* when an answer arrives (until DTLS shows a certificate that a grant covers;
//! pre-auth sessions stay here), and *granted* after that. A fingerprint in an answer is only a
//! claim (anyone can copy the owner's), so only the DTLS handshake moves a session to granted.
//! The limits, for `max` slots in all:
//! - `reserved` slots are for granted sessions only, so unanswered and unverified sessions
//!   together hold at most `max - reserved`;
//! - unanswered sessions hold at most `max_unanswered` (each costs a pipeline, and an answer
//!   comes within a few seconds or not at all);
//! - when a pool is full, a session makes room for the new one: the oldest of the newcomer's
//!   own source (the viewer's address as the rendezvous saw it) if it has one there, else the
//!   oldest of all. A stranger's burst then displaces
//!   the stranger's own sessions, not the owner's (who answers and verifies within a second or
//!   so, while parked sessions are old). Refusing the new one instead would let whoever came
//!   first keep the slots.
//!
//! Only when every slot is held by a granted session is a new one refused.

use crate::signalling::protocol::SessionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Unanswered,
    Unverified,
    Granted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max: usize,
    pub reserved: usize,
    pub max_unanswered: usize,
}

impl Limits {
    /// A quarter of the slots (at least one) reserved for granted sessions; at most four
    /// sessions waiting for an answer at once.
    pub fn for_max(max: usize) -> Self {
        let max = max.max(1);
        let reserved = (max / 4).max(1).min(max.saturating_sub(1));
        let max_unanswered = 4.min(max - reserved).max(1);
        Self {
            max,
            reserved,
            max_unanswered,
        }
    }
}

/// What to do with a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it; first end `evict` (an older unverified or unanswered session), if any.
    Admit { evict: Option<SessionId> },
    /// Every slot is held by a granted viewer.
    Refuse,
}

#[derive(Debug, Clone)]
struct Slot {
    id: SessionId,
    /// The viewer's source, when the rendezvous said it.
    source: Option<String>,
    phase: Phase,
    /// Admission order: lower is older.
    order: u64,
}

#[derive(Debug, Clone)]
pub struct Admission {
    limits: Limits,
    slots: Vec<Slot>,
    next: u64,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            slots: Vec::new(),
            next: 0,
        }
    }

    fn count(&self, phases: &[Phase]) -> usize {
        self.slots
            .iter()
            .filter(|s| phases.contains(&s.phase))
            .count()
    }

    fn oldest(&self, phases: &[Phase]) -> Option<SessionId> {
        self.oldest_where(phases, |_| true)
    }

    fn oldest_where(&self, phases: &[Phase], keep: impl Fn(&Slot) -> bool) -> Option<SessionId> {
        self.slots
            .iter()
            .filter(|s| phases.contains(&s.phase) && keep(s))
            .min_by_key(|s| s.order)
            .map(|s| s.id.clone())
    }

    /// The session that makes room in a full pool: `source`'s own oldest there, else the
    /// oldest of all.
    fn displaced(&self, phases: &[Phase], source: Option<&str>) -> Option<SessionId> {
        source
            .and_then(|src| self.oldest_where(phases, |s| s.source.as_deref() == Some(src)))
            .or_else(|| self.oldest(phases))
    }

    /// A viewer asks for a session `id`, from `source` when the rendezvous said.
    pub fn request(&mut self, id: SessionId, source: Option<String>) -> Decision {
        use Phase::*;
        // A repeated id replaces its slot.
        self.ended(&id);
        let l = self.limits;
        let src = source.as_deref();
        let evict = if self.count(&[Unanswered]) >= l.max_unanswered {
            self.displaced(&[Unanswered], src)
        } else if self.count(&[Unanswered, Unverified]) >= l.max - l.reserved {
            self.displaced(&[Unanswered, Unverified], src)
        } else if self.slots.len() >= l.max {
            match self.displaced(&[Unanswered, Unverified], src) {
                Some(id) => Some(id),
                None => return Decision::Refuse,
            }
        } else {
            None
        };
        if let Some(old) = &evict {
            self.ended(old);
        }
        self.slots.push(Slot {
            id,
            source,
            phase: Unanswered,
            order: self.next,
        });
        self.next += 1;
        Decision::Admit { evict }
    }

    /// The session moved on (answered, or verified against a grant). A session never moves
    /// back: a revoked grant ends the session instead.
    pub fn advance(&mut self, id: &SessionId, phase: Phase) {
        if let Some(slot) = self.slots.iter_mut().find(|s| &s.id == id)
            && phase as u8 > slot.phase as u8
        {
            slot.phase = phase;
        }
    }

    pub fn ended(&mut self, id: &SessionId) {
        self.slots.retain(|s| &s.id != id);
    }

    pub fn phase(&self, id: &SessionId) -> Option<Phase> {
        self.slots.iter().find(|s| &s.id == id).map(|s| s.phase)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: usize) -> SessionId {
        SessionId(format!("s{n}"))
    }

    #[test]
    fn limits_for_the_default_and_small_devices() {
        let l = Limits::for_max(16);
        assert_eq!((l.max, l.reserved, l.max_unanswered), (16, 4, 4));
        let l = Limits::for_max(1);
        assert_eq!((l.max, l.reserved, l.max_unanswered), (1, 0, 1));
        let l = Limits::for_max(2);
        assert_eq!((l.max, l.reserved, l.max_unanswered), (2, 1, 1));
    }

    #[test]
    fn a_flood_of_unanswered_connects_never_blocks_a_new_session() {
        let mut a = Admission::new(Limits::for_max(16));
        // Two sockets x 8 connects that never answer.
        for n in 0..16 {
            assert!(matches!(a.request(sid(n), None), Decision::Admit { .. }));
        }
        assert_eq!(
            a.count(&[Phase::Unanswered]),
            4,
            "only four wait for an answer"
        );
        // The owner connects now: admitted, evicting the oldest stranger.
        assert_eq!(
            a.request(sid(100), None),
            Decision::Admit {
                evict: Some(sid(12))
            }
        );
        a.advance(&sid(100), Phase::Unverified);
        a.advance(&sid(100), Phase::Granted);
        // More strangers cannot push the granted owner out.
        for n in 200..300 {
            a.request(sid(n), None);
        }
        assert_eq!(a.phase(&sid(100)), Some(Phase::Granted));
    }

    #[test]
    fn strangers_in_pre_auth_hold_at_most_the_unreserved_slots() {
        let mut a = Admission::new(Limits::for_max(16));
        for n in 0..40 {
            a.request(sid(n), None);
            a.advance(&sid(n), Phase::Unverified);
        }
        assert_eq!(a.len(), 12, "max - reserved");
        // Granted viewers fill the reserved slots and beyond, displacing strangers.
        for n in 100..116 {
            assert!(matches!(a.request(sid(n), None), Decision::Admit { .. }));
            a.advance(&sid(n), Phase::Unverified);
            a.advance(&sid(n), Phase::Granted);
        }
        assert_eq!(a.count(&[Phase::Granted]), 16);
        assert_eq!(a.len(), 16);
        // Only now, with every slot granted, is a new session refused.
        assert_eq!(a.request(sid(999), None), Decision::Refuse);
        a.ended(&sid(100));
        assert_eq!(a.request(sid(999), None), Decision::Admit { evict: None });
    }

    #[test]
    fn phases_only_move_forward_and_ids_are_reused_cleanly() {
        let mut a = Admission::new(Limits::for_max(4));
        a.request(sid(1), None);
        a.advance(&sid(1), Phase::Granted);
        a.advance(&sid(1), Phase::Unverified);
        assert_eq!(a.phase(&sid(1)), Some(Phase::Granted));
        a.request(sid(1), None);
        assert_eq!(a.phase(&sid(1)), Some(Phase::Unanswered));
        assert_eq!(a.len(), 1);
        a.advance(&sid(7), Phase::Granted); // unknown: nothing happens
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn a_burst_from_one_source_displaces_only_its_own_sessions() {
        let mut a = Admission::new(Limits::for_max(16));
        let stranger = || Some("192.0.2.66".to_string());
        let owner = Some("198.51.100.7".to_string());
        for n in 0..3 {
            a.request(sid(n), stranger());
        }
        // The owner connects in the middle of the burst, and has not answered yet when the
        // rest of the burst arrives.
        assert!(matches!(a.request(sid(100), owner), Decision::Admit { .. }));
        for n in 3..40 {
            assert!(matches!(
                a.request(sid(n), stranger()),
                Decision::Admit { .. }
            ));
            assert_eq!(
                a.phase(&sid(100)),
                Some(Phase::Unanswered),
                "burst {n} displaced the owner"
            );
        }
        assert_eq!(
            a.count(&[Phase::Unanswered]),
            4,
            "the owner's and three of the stranger's"
        );
        a.advance(&sid(100), Phase::Unverified);
        a.advance(&sid(100), Phase::Granted);
        assert_eq!(a.phase(&sid(100)), Some(Phase::Granted));
    }

    #[test]
    fn viewers_of_one_household_starting_together_are_all_admitted() {
        let mut a = Admission::new(Limits::for_max(16));
        let home = || Some("198.51.100.7".to_string());
        for n in 0..4 {
            assert_eq!(a.request(sid(n), home()), Decision::Admit { evict: None });
        }
        assert_eq!(a.count(&[Phase::Unanswered]), 4);
    }
}
