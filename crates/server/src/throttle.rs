//! Bounds what a hostile caller can make the server do for nothing: refusals (401, 403) per
//! client address, and token requests per client and address, each a GCRA rate limit
//! (`governor`: a well-kept implementation, instead of hand-written buckets).
//!
//! A refusal within the limit is answered and audited as always (R-AUD-1). Beyond it, the caller
//! gets 429 with `Retry-After`; the first refusal over the limit is still audited (saying that
//! further ones will not be, until the limit resets), the rest are counted in the log only, so
//! unauthenticated requests cannot grow the audit trail without bound. Requests that are not
//! refused are never limited: a clinician behind the same address as a noisy client still works.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// What the throttle says about one more refusal from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Within the limit: answer and audit it as usual.
    Allowed,
    /// The first over the limit: audit it (as the last one for now), answer 429.
    FirstThrottled { retry_after: u64 },
    /// Over the limit again: answer 429, do not audit.
    Throttled { retry_after: u64 },
}

pub struct Throttle {
    refusals: DefaultKeyedRateLimiter<IpAddr>,
    token_requests: DefaultKeyedRateLimiter<(String, IpAddr)>,
    /// Token exchanges by neighbouring records: one per record opened there for a patient
    /// whose care crosses the boundary, so far more than a backend client's.
    exchanges: DefaultKeyedRateLimiter<(String, IpAddr)>,
    /// Sign-ins started (`GET /auth/authorize`) per client address.
    authorize: DefaultKeyedRateLimiter<(String, IpAddr)>,
    /// Addresses over the refusal limit whose first throttled refusal was audited.
    throttled: Mutex<HashSet<IpAddr>>,
    clock: DefaultClock,
}

/// Keyed limiters keep a cell per key: past this many, the ones back at full capacity are
/// dropped.
const MAX_KEYS: usize = 100_000;

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl Throttle {
    pub fn new(
        refusals_per_minute: u32,
        token_requests_per_minute: u32,
        exchanges_per_minute: u32,
        authorize_per_minute: u32,
    ) -> Throttle {
        Throttle {
            refusals: RateLimiter::keyed(quota(refusals_per_minute)),
            token_requests: RateLimiter::keyed(quota(token_requests_per_minute)),
            exchanges: RateLimiter::keyed(quota(exchanges_per_minute)),
            authorize: RateLimiter::keyed(quota(authorize_per_minute)),
            throttled: Mutex::new(HashSet::new()),
            clock: DefaultClock::default(),
        }
    }

    /// One more refusal from `address`.
    pub fn refusal(&self, address: IpAddr) -> Refusal {
        if self.refusals.len() > MAX_KEYS {
            self.refusals.retain_recent();
        }
        let mut throttled = self
            .throttled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match self.refusals.check_key(&address) {
            Ok(()) => {
                throttled.remove(&address);
                Refusal::Allowed
            }
            Err(not_until) => {
                let retry_after = seconds(not_until.wait_time_from(self.clock.now()));
                if throttled.len() > MAX_KEYS {
                    throttled.clear();
                }
                if throttled.insert(address) {
                    Refusal::FirstThrottled { retry_after }
                } else {
                    Refusal::Throttled { retry_after }
                }
            }
        }
    }

    /// One more token request from `client` at `address`: `Err(retry_after)` beyond the limit.
    pub fn token_request(&self, client: &str, address: IpAddr) -> Result<(), u64> {
        self.check(&self.token_requests, client, address)
    }

    /// One more token exchange by the neighbouring record `client` at `address`.
    pub fn exchange(&self, client: &str, address: IpAddr) -> Result<(), u64> {
        self.check(&self.exchanges, client, address)
    }

    /// One more sign-in started from `address`: `Err(retry_after)` beyond the limit. Other
    /// addresses are never affected.
    pub fn authorize(&self, address: IpAddr) -> Result<(), u64> {
        self.check(&self.authorize, "", address)
    }

    fn check(
        &self,
        limiter: &DefaultKeyedRateLimiter<(String, IpAddr)>,
        client: &str,
        address: IpAddr,
    ) -> Result<(), u64> {
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        let client: String = client.chars().take(128).collect();
        limiter
            .check_key(&(client, address))
            .map_err(|not_until| seconds(not_until.wait_time_from(self.clock.now())))
    }
}

/// Whole seconds to wait, at least one.
fn seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item4_refusals_beyond_the_limit_are_throttled_and_only_the_first_is_audited() {
        let t = Throttle::new(3, 2, 2, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.refusal(a), Refusal::Allowed);
        }
        let Refusal::FirstThrottled { retry_after } = t.refusal(a) else {
            panic!("the fourth refusal in a minute is throttled");
        };
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(matches!(t.refusal(a), Refusal::Throttled { .. }));
        assert_eq!(
            t.refusal(b),
            Refusal::Allowed,
            "another address is not affected"
        );
    }

    #[test]
    fn item4_token_requests_are_limited_per_client_and_address() {
        let t = Throttle::new(3, 2, 2, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.token_request("client-a", a).is_ok());
        assert!(t.token_request("client-a", a).is_ok());
        assert!(t.token_request("client-a", a).is_err());
        assert!(t.token_request("client-b", a).is_ok());
        assert!(t
            .token_request("client-a", "192.0.2.9".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn sign_ins_started_are_limited_per_address_and_other_addresses_are_unaffected() {
        let t = Throttle::new(3, 2, 2, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.authorize(a).is_ok());
        assert!(t.authorize(a).is_ok());
        let retry_after = t.authorize(a).unwrap_err();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(t.authorize("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn r_fed_1_exchanges_by_a_neighbour_have_a_limit_of_their_own() {
        let t = Throttle::new(3, 1, 3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.token_request("scr-b", a).is_ok());
        assert!(t.token_request("scr-b", a).is_err());
        // The backend-client limit is spent; the neighbour's exchanges are not.
        for _ in 0..3 {
            assert!(t.exchange("scr-b", a).is_ok());
        }
        assert!(t.exchange("scr-b", a).is_err());
    }
}
