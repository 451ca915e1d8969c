//! The one retry policy every network request of imgbuild goes through (registry
//! requests, token requests, blob transfers, url archives).
//!
//! [`run`] calls an attempt until it succeeds, fails for good, or the [`Retry`]
//! policy says stop: at most `attempts` attempts, none started once `budget` has
//! passed since the first. Between attempts it waits a full-jitter exponential
//! backoff, or what the server asked for with `Retry-After` (429, 503) when that
//! still ends within the budget — a server asking for longer than the budget leaves
//! ends the retries at once rather than being hammered early. Each retry is reported
//! as [`Event::Retrying`].

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use super::transport::{is_tls_error, root_cause};
use crate::events::{Event, Events};

/// Backoff for failed requests: attempt n waits a random time in
/// `[0, min(max, base * 2^(n-1))]` (full jitter). No attempt starts once `budget`
/// has passed since the first: stalls cannot add up past it.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub budget: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
            budget: Duration::from_secs(180),
        }
    }
}

impl Retry {
    /// Whether attempt `attempt` (1-based, just failed) may be followed by another,
    /// for a request first tried at `started`.
    pub fn again(&self, attempt: u32, started: Instant) -> bool {
        attempt < self.attempts && started.elapsed() < self.budget
    }

    /// How long to wait after attempt `attempt` (1-based, just failed) of a request
    /// first tried at `started`, the server having asked for `retry_after` (if it
    /// did): None when no attempt may follow.
    pub fn delay(
        &self,
        attempt: u32,
        started: Instant,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if !self.again(attempt, started) {
            return None;
        }
        match retry_after {
            Some(wait) => {
                let left = self.budget.saturating_sub(started.elapsed());
                (wait <= left).then_some(wait)
            }
            None => Some(backoff(*self, attempt)),
        }
    }
}

/// Whether an HTTP status is worth another attempt: 408, 429 and 5xx.
pub fn retryable_status(code: u16) -> bool {
    code == 408 || code == 429 || (500..600).contains(&code)
}

/// What one attempt came to.
pub enum Attempt<T, E> {
    Done(T),
    /// Worth another attempt: `why` for the retry note, `after` when the server asked
    /// to wait (`Retry-After`), and `last`, what [`run`] returns when none may follow.
    Retry {
        why: String,
        after: Option<Duration>,
        last: E,
    },
    /// Retrying will not change it.
    Fatal(E),
}

impl<T, E> Attempt<T, E> {
    /// A retry without a server-given wait.
    pub fn retry(why: impl Into<String>, last: E) -> Self {
        Attempt::Retry {
            why: why.into(),
            after: None,
            last,
        }
    }
}

/// Runs `attempt` (given its 1-based number) under `policy`. `what` names the request
/// in the retry notes ("GET /v2/ at 127.0.0.1:5000").
pub async fn run<T, E, F, Fut>(
    policy: Retry,
    what: &str,
    events: &Events,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let started = Instant::now();
    let mut n = 1;
    loop {
        let (why, after, last) = match attempt(n).await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Fatal(e) => return Err(e),
            Attempt::Retry { why, after, last } => (why, after, last),
        };
        let Some(wait) = policy.delay(n, started, after) else {
            return Err(last);
        };
        // A failed answer held open would keep its connection from the pool.
        drop(last);
        events.emit(Event::Retrying {
            what: what.to_string(),
            why,
            attempt: n + 1,
            attempts: policy.attempts,
        });
        tokio::time::sleep(wait).await;
        n += 1;
    }
}

/// A plain request of ours under the retry policy: retryable statuses (after their
/// `Retry-After`) and connection failures are tried again; after the last attempt,
/// its answer or error is returned.
pub async fn request<F, Fut>(
    policy: Retry,
    events: &Events,
    what: &str,
    registry: &str,
    mut f: F,
) -> Result<reqwest::Response, reqwest::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Response, reqwest::Error>>,
{
    let what = format!("{what} at {registry}");
    run(policy, &what, events, |_| {
        let attempt = f();
        async move {
            match attempt.await {
                Ok(r) if retryable_status(r.status().as_u16()) => Attempt::Retry {
                    why: format!("HTTP {}", r.status()),
                    after: retry_after(&r),
                    last: Ok(r),
                },
                Ok(r) => Attempt::Done(r),
                // A TLS handshake failure will not heal by waiting; connection refusals
                // and resets might (a registry that is starting, a flaky proxy).
                Err(e)
                    if !is_tls_error(&e)
                        && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    Attempt::retry(root_cause(&e), Err(e))
                }
                Err(e) => Attempt::Fatal(Err(e)),
            }
        }
    })
    .await
    .or_else(|last| last)
}

/// The wait a 429 or 503 answer asks for with `Retry-After` (delay-seconds or an
/// HTTP date, as of `now`); None for other statuses and unreadable values. Capped at
/// a day, so that no value overflows the arithmetic after it.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    if !matches!(response.status().as_u16(), 429 | 503) {
        return None;
    }
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    parse_retry_after(value.to_str().ok()?, SystemTime::now())
}

/// The longest wait a `Retry-After` is read as.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` (a date in
/// the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = parse_http_date(value)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP servers send.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || year < 1970 || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Full-jitter exponential backoff. The randomness only spreads retries of parallel
/// uploads apart; it never reaches a digested byte.
pub fn backoff(retry: Retry, attempt: u32) -> Duration {
    let ceiling = retry
        .base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(retry.max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // splitmix-style scramble of the clock's low bits: enough to decorrelate workers.
    let mut x = u64::from(nanos) ^ (u64::from(attempt) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let fraction = (x % 1_000_000) as f64 / 1_000_000.0;
    ceiling.mul_f64(fraction.max(0.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A policy that retries at once: backoffs of nanoseconds.
    fn quick(attempts: u32) -> Retry {
        Retry {
            attempts,
            base: Duration::from_nanos(1),
            max: Duration::from_nanos(1),
            budget: Duration::from_secs(600),
        }
    }

    /// Keeps the events it is given.
    struct Recorder(Arc<Mutex<Vec<Event>>>);

    impl crate::events::Reporter for Recorder {
        fn report(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    fn recorded() -> (Events, Arc<Mutex<Vec<Event>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (Events::new(Recorder(seen.clone())), seen)
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn retries_stop_at_the_attempt_count_or_the_budget() {
        let r = Retry {
            attempts: 3,
            budget: Duration::from_secs(60),
            ..Retry::default()
        };
        let now = Instant::now();
        assert!(r.again(1, now) && r.again(2, now));
        assert!(!r.again(3, now));
        let long_ago = now - Duration::from_secs(61);
        assert!(!r.again(1, long_ago));
        assert_eq!(r.delay(1, long_ago, None), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            budget: Duration::from_secs(60),
        };
        for attempt in 1..10 {
            let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(r.max);
            let d = backoff(r, attempt);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
            assert!(d >= ceiling.mul_f64(0.1), "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(code), "{code}");
        }
        for code in [200, 201, 400, 401, 403, 404] {
            assert!(!retryable_status(code), "{code}");
        }
    }

    #[test]
    fn a_retry_after_within_the_budget_is_waited_for_exactly() {
        let r = Retry {
            attempts: 5,
            budget: Duration::from_secs(60),
            ..Retry::default()
        };
        let now = Instant::now();
        let asked = Some(Duration::from_secs(7));
        assert_eq!(r.delay(1, now, asked), Some(Duration::from_secs(7)));
        // More than the budget leaves: no attempt follows.
        let started = now - Duration::from_secs(55);
        assert_eq!(r.delay(1, started, asked), None);
        // Without one, the backoff applies (at most `max`).
        assert!(r.delay(1, now, None).is_some_and(|d| d <= r.max));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        let at = |v: &str| parse_retry_after(v, now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 0 "), Some(Duration::ZERO));
        // 2015-10-21 07:28:00 UTC is 1445412480: ten seconds after `now`.
        assert_eq!(
            at("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(10))
        );
        // A date in the past means now.
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 CET",
            "21 Oct 2015",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(RETRY_AFTER_CAP)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(RETRY_AFTER_CAP)
        );
    }

    #[test]
    fn run_makes_at_most_the_policy_s_attempts_and_returns_the_last_failure() {
        let (events, seen) = recorded();
        let mut calls = Vec::new();
        let result: Result<(), u32> = block_on(run(quick(3), "GET x at r", &events, |n| {
            calls.push(n);
            async move { Attempt::retry(format!("HTTP 503 ({n})"), n) }
        }));
        assert_eq!(result, Err(3));
        assert_eq!(calls, [1, 2, 3]);
        let notes: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::Retrying {
                    what,
                    why,
                    attempt,
                    attempts,
                } => format!("{what}: {why} {attempt}/{attempts}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            notes,
            [
                "GET x at r: HTTP 503 (1) 2/3",
                "GET x at r: HTTP 503 (2) 3/3"
            ]
        );
    }

    #[test]
    fn run_stops_at_success_or_a_fatal_failure() {
        let (events, seen) = recorded();
        let result: Result<&str, &str> = block_on(run(quick(5), "w", &events, |n| async move {
            if n < 3 {
                Attempt::retry("lost the connection", "lost")
            } else {
                Attempt::Done("ok")
            }
        }));
        assert_eq!(result, Ok("ok"));
        assert_eq!(seen.lock().unwrap().len(), 2);

        let mut calls = 0;
        let result: Result<(), &str> = block_on(run(quick(5), "w", &events, |_| {
            calls += 1;
            async { Attempt::Fatal("refused") }
        }));
        assert_eq!((result, calls), (Err("refused"), 1));
    }

    #[test]
    fn run_gives_up_when_the_server_asks_to_wait_past_the_budget() {
        let (events, seen) = recorded();
        let mut calls = 0;
        let result: Result<(), &str> = block_on(run(quick(5), "w", &events, |_| {
            calls += 1;
            async {
                Attempt::Retry {
                    why: "HTTP 503".to_string(),
                    after: Some(Duration::from_secs(3600)),
                    last: "busy",
                }
            }
        }));
        assert_eq!((result, calls), (Err("busy"), 1));
        assert!(seen.lock().unwrap().is_empty());
    }
}
