//! Renewals waiting for their proof, as pure data. A browser renews its certificate before it
//! expires: over a session authorised by the old certificate it names the new one (`offer`).
//! Nothing moves then: the grant follows only when a session's DTLS handshake shows the new
//! certificate within `WINDOW_SECS` (`take`), which proves the key. Before, `renew` moved the
//! grant to any fingerprint at once, and the old session kept streaming beside it.
//!
//! Offers live in memory only: one lost in a restart costs a retry (the browser keeps its old
//! certificate until the new one has been let in).

use super::model::Time;
use crate::identity::Fingerprint;

/// How long an offered certificate has to show up: the browser reconnects with it at once.
pub const WINDOW_SECS: Time = 120;
/// At most one offer per grant holder; this bounds the list even if grants were unbounded.
pub const MAX_PENDING: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offer {
    old: Fingerprint,
    new: Fingerprint,
    until: Time,
}

#[derive(Debug, Default)]
pub struct Renewals {
    offers: Vec<Offer>,
}

impl Renewals {
    /// `old` will be replaced by `new` once `new` proves itself before `now + WINDOW_SECS`.
    /// A later offer by the same `old`, or for the same `new`, replaces the earlier one.
    pub fn offer(&mut self, old: Fingerprint, new: Fingerprint, now: Time) {
        self.offers
            .retain(|o| o.until > now && o.old != old && o.new != new);
        if self.offers.len() >= MAX_PENDING {
            self.offers.remove(0);
        }
        self.offers.push(Offer {
            old,
            new,
            until: now + WINDOW_SECS,
        });
    }

    /// The certificate `new` replaces, if it was offered and is still in time; the offer is
    /// used up either way.
    pub fn take(&mut self, new: &Fingerprint, now: Time) -> Option<Fingerprint> {
        let at = self.offers.iter().position(|o| o.new == *new)?;
        let offer = self.offers.remove(at);
        (offer.until > now).then_some(offer.old)
    }

    /// Is `new` waiting? (A cheap look before the session asks for the write.)
    pub fn is_offered(&self, new: &Fingerprint, now: Time) -> bool {
        self.offers.iter().any(|o| o.new == *new && o.until > now)
    }

    pub fn len(&self) -> usize {
        self.offers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of_der(&[n])
    }

    #[test]
    fn an_offer_is_taken_once_and_only_in_time() {
        let mut r = Renewals::default();
        r.offer(fp(1), fp(2), 1000);
        assert!(r.is_offered(&fp(2), 1000));
        assert_eq!(r.take(&fp(3), 1001), None, "not offered");
        assert_eq!(r.take(&fp(2), 1001), Some(fp(1)));
        assert_eq!(r.take(&fp(2), 1002), None, "used up");

        r.offer(fp(1), fp(2), 2000);
        assert!(!r.is_offered(&fp(2), 2000 + WINDOW_SECS));
        assert_eq!(r.take(&fp(2), 2000 + WINDOW_SECS), None, "too late");
        assert!(r.is_empty());
    }

    #[test]
    fn a_later_offer_replaces_the_earlier_one() {
        let mut r = Renewals::default();
        r.offer(fp(1), fp(2), 1000);
        r.offer(fp(1), fp(3), 1001); // the browser made another certificate
        assert_eq!(r.take(&fp(2), 1002), None);
        assert_eq!(r.take(&fp(3), 1002), Some(fp(1)));
        // Two holders naming one certificate: the later one wins, the earlier is dropped.
        r.offer(fp(4), fp(9), 1003);
        r.offer(fp(5), fp(9), 1004);
        assert_eq!(r.len(), 1);
        assert_eq!(r.take(&fp(9), 1005), Some(fp(5)));
    }

    #[test]
    fn the_list_is_bounded() {
        let mut r = Renewals::default();
        for n in 0..=MAX_PENDING as u8 {
            r.offer(fp(n), fp(n.wrapping_add(128)), 1000);
        }
        assert_eq!(r.len(), MAX_PENDING);
        assert_eq!(r.take(&fp(128), 1001), None, "the oldest went first");
        assert_eq!(r.take(&fp(129), 1001), Some(fp(1)));
    }
}
