//! The request-weight budget of one Binance provider, shared by all its requests in flight.
//!
//! Binance counts the weight of an IP's requests per minute and answers 429 past its limit,
//! then 418 (an IP ban of minutes to days) to a client that keeps going. So a request is sent
//! only once its weight fits the budget: the weight of every request counts from when it is
//! sent until one window after its answer came. That holds the budget in *any* interval of a
//! window's length, whatever the server's windows are aligned to and however late a request
//! reaches it. The server's own count (`X-MBX-USED-WEIGHT-1M`, which includes other clients
//! of the same IP) wins when it is higher, and a 429 or 418 blocks every request of the
//! provider until its `Retry-After` has passed.

use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The weight of one `GET /api/v3/aggTrades`, whatever its parameters.
pub const AGG_TRADES_WEIGHT: u32 = 4;

/// The header in which Binance reports the weight used in its current minute.
pub const USED_WEIGHT_HEADER: &str = "x-mbx-used-weight-1m";

/// The weight budget (see the module docs).
#[derive(Debug)]
pub struct WeightLimiter {
    budget: u32,
    window: Duration,
    state: Mutex<State>,
    /// Woken when weight is settled or reconciled, or a block changes.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    spent: Vec<Spend>,
    next_ticket: u64,
    blocked_until: Option<Instant>,
}

/// Weight that still counts: until `expires`, or for as long as its request is in flight.
#[derive(Debug)]
struct Spend {
    ticket: u64,
    weight: u32,
    expires: Option<Instant>,
}

/// The provider is blocked (a 429 or 418) for longer than the caller would wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub remaining: Duration,
}

/// Weight held by one request; dropping it starts the window after which it stops counting.
#[derive(Debug)]
pub struct Reservation<'a> {
    limiter: &'a WeightLimiter,
    ticket: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.limiter.settle(self.ticket);
    }
}

impl WeightLimiter {
    pub fn new(budget: u32, window: Duration) -> Self {
        WeightLimiter {
            budget,
            window,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// Weight that counts now, in flight or answered within the last window.
    pub fn used(&self) -> u32 {
        let mut state = self.lock();
        state.prune(Instant::now());
        state.used()
    }

    /// Wait until `weight` fits the budget and no block is in force, then hold it. A block
    /// that lasts longer than `patience` is not waited for: `Err` says how long it lasts.
    pub async fn reserve(
        &self,
        weight: u32,
        patience: Duration,
    ) -> Result<Reservation<'_>, Blocked> {
        loop {
            let mut changed = pin!(self.changed.notified());
            // Registered before the state is read, so a change in between still wakes us.
            changed.as_mut().enable();
            let wake = {
                let mut state = self.lock();
                let now = Instant::now();
                state.prune(now);
                match state.blocked_until.filter(|until| *until > now) {
                    Some(until) if until - now > patience => {
                        return Err(Blocked {
                            remaining: until - now,
                        });
                    }
                    Some(until) => Some(until),
                    None => {
                        let used = state.used();
                        // Nothing counted: a budget below one request's weight still lets
                        // requests through one at a time.
                        if used == 0 || used.saturating_add(weight) <= self.budget {
                            let ticket = state.next_ticket;
                            state.next_ticket += 1;
                            state.spent.push(Spend {
                                ticket,
                                weight,
                                expires: None,
                            });
                            return Ok(Reservation {
                                limiter: self,
                                ticket,
                            });
                        }
                        state.fits_at(weight, self.budget)
                    }
                }
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                // Only requests in flight hold the weight: wait for one to be answered.
                None => changed.await,
            }
        }
    }

    /// The server counts `server_used` in its current window; when that is more than this
    /// limiter counts (other clients of the IP, a window begun earlier), the difference
    /// counts for one window from now.
    pub fn reconcile(&self, server_used: u32) {
        let mut state = self.lock();
        let now = Instant::now();
        state.prune(now);
        let used = state.used();
        if server_used > used {
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.spent.push(Spend {
                ticket,
                weight: server_used - used,
                expires: Some(now + self.window),
            });
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// No request of this limiter is sent before `until` (a later block stays in force).
    pub fn block_until(&self, until: Instant) {
        let mut state = self.lock();
        if state.blocked_until.is_none_or(|current| current < until) {
            state.blocked_until = Some(until);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    fn settle(&self, ticket: u64) {
        let mut state = self.lock();
        let expires = Instant::now() + self.window;
        if let Some(spend) = state.spent.iter_mut().find(|s| s.ticket == ticket) {
            spend.expires = Some(expires);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every statement, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn prune(&mut self, now: Instant) {
        self.spent
            .retain(|s| s.expires.is_none_or(|expires| expires > now));
        if self.blocked_until.is_some_and(|until| until <= now) {
            self.blocked_until = None;
        }
    }

    fn used(&self) -> u32 {
        self.spent
            .iter()
            .fold(0u32, |sum, s| sum.saturating_add(s.weight))
    }

    /// When enough weight will have expired for `weight` to fit, counting only weight whose
    /// expiry is known; `None` when requests in flight must be answered first.
    fn fits_at(&self, weight: u32, budget: u32) -> Option<Instant> {
        let mut expiring: Vec<(Instant, u32)> = self
            .spent
            .iter()
            .filter_map(|s| s.expires.map(|at| (at, s.weight)))
            .collect();
        expiring.sort_unstable();
        let mut used = self.used();
        for (at, freed) in expiring {
            used -= freed;
            if used == 0 || used.saturating_add(weight) <= budget {
                return Some(at);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEVER: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn weight_waits_for_the_window_after_the_answers() {
        let limiter = WeightLimiter::new(8, Duration::from_secs(1));
        let start = Instant::now();
        let a = limiter.reserve(4, NEVER).await.unwrap();
        let b = limiter.reserve(4, NEVER).await.unwrap();
        assert_eq!(limiter.used(), 8);
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(b);
        // The first answer came at 300 ms: its weight counts until 1.3 s.
        let _c = limiter.reserve(4, NEVER).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1300));
        let _d = limiter.reserve(4, NEVER).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn weight_in_flight_is_held_until_answered() {
        let limiter = WeightLimiter::new(4, Duration::from_secs(1));
        let start = Instant::now();
        let held = limiter.reserve(4, NEVER).await.unwrap();
        let waiter = async {
            let _next = limiter.reserve(4, NEVER).await.unwrap();
            start.elapsed()
        };
        let answer = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(held);
        };
        let (waited, ()) = tokio::join!(waiter, answer);
        assert_eq!(waited, Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_count_wins_when_higher() {
        let limiter = WeightLimiter::new(40, Duration::from_secs(1));
        let start = Instant::now();
        drop(limiter.reserve(4, NEVER).await.unwrap());
        limiter.reconcile(2);
        assert_eq!(limiter.used(), 4, "a lower server count changes nothing");
        limiter.reconcile(38);
        assert_eq!(limiter.used(), 38);
        let _a = limiter.reserve(2, NEVER).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        let _b = limiter.reserve(4, NEVER).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_stops_every_request_until_it_ends() {
        let limiter = WeightLimiter::new(1000, Duration::from_secs(60));
        let start = Instant::now();
        limiter.block_until(start + Duration::from_secs(2));
        limiter.block_until(start + Duration::from_secs(1));
        let waits = futures::future::join_all((0..3).map(|_| async {
            let _r = limiter.reserve(4, Duration::from_secs(5)).await.unwrap();
            start.elapsed()
        }))
        .await;
        assert_eq!(waits, [Duration::from_secs(2); 3], "the later block holds");
        limiter.block_until(Instant::now() + Duration::from_secs(30));
        let refused = limiter
            .reserve(4, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(refused.remaining, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_below_one_request_still_lets_one_through() {
        let limiter = WeightLimiter::new(2, Duration::from_secs(1));
        let start = Instant::now();
        drop(limiter.reserve(4, NEVER).await.unwrap());
        drop(limiter.reserve(4, NEVER).await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
