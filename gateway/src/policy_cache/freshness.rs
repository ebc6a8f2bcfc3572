//! When a cached policy value may be served: pure functions of the time it
//! was read, the time the policy generation was last confirmed, and the
//! settings, so the states (fresh, stale-serving, failed closed) are tested
//! with tables and a made-up clock.

use std::time::{Duration, Instant};

/// How the cache keeps values (`POSTERN_POLICY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How often every replica reads the policy generation
    /// (`POSTERN_POLICY_POLL_MS`): without Redis, a change is seen within this.
    pub poll_interval: Duration,
    /// How long one generation read may take before it counts as failed.
    pub poll_timeout: Duration,
    /// How long cached values keep serving once the store stops answering
    /// (`POSTERN_POLICY_STALE_LIMIT_MS`); after it, decisions fail closed.
    pub stale_limit: Duration,
    /// How long "no such token / connection" is remembered.
    pub negative_ttl: Duration,
    /// Values are read again after this even when no change was announced: a
    /// safety net for writes made behind the gateway's back.
    pub max_age: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            poll_timeout: Duration::from_secs(1),
            stale_limit: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(1),
            max_age: Duration::from_secs(60),
        }
    }
}

impl CacheSettings {
    /// A value confirmed this recently counts as fresh: the next generation
    /// read is due within a poll interval and may take its timeout.
    pub fn fresh_window(&self) -> Duration {
        self.poll_interval + self.poll_timeout
    }
}

/// The state of the whole cache, from the last confirmed generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The generation was never read: nothing is known yet.
    Unknown,
    /// Confirmed within the fresh window.
    Fresh,
    /// The store has not answered for `for_`, still within the stale limit:
    /// cached values serve.
    Stale { for_: Duration },
    /// Past the stale limit: cached values no longer serve (fail closed).
    FailedClosed { for_: Duration },
}

impl Health {
    pub fn of(validated_at: Option<Instant>, now: Instant, settings: &CacheSettings) -> Self {
        let Some(validated_at) = validated_at else {
            return Health::Unknown;
        };
        let age = now.saturating_duration_since(validated_at);
        if age <= settings.fresh_window() {
            Health::Fresh
        } else if age <= settings.stale_limit {
            Health::Stale { for_: age }
        } else {
            Health::FailedClosed { for_: age }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Fresh => "fresh",
            Health::Stale { .. } => "stale",
            Health::FailedClosed { .. } => "failed_closed",
        }
    }

    /// The metric gauge's value: 0 fresh, 1 stale, 2 failed closed (or unknown).
    pub fn gauge(self) -> i64 {
        match self {
            Health::Fresh => 0,
            Health::Stale { .. } => 1,
            Health::Unknown | Health::FailedClosed { .. } => 2,
        }
    }

    /// The state changed kind (stale for 3 s and for 4 s are the same state).
    pub fn differs_from(self, other: Health) -> bool {
        self.as_str() != other.as_str()
    }
}

/// What to do with a cached value on a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Hit,
    /// Serve it, though the store has not confirmed it lately (counted).
    StaleHit,
    /// Read the store again (and cache what it says).
    Reload,
    /// Refuse: the store has not answered for longer than the stale limit.
    FailClosed { for_: Duration },
}

/// A cached value: when it was read, and whether it says "there is none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    pub loaded_at: Instant,
    pub negative: bool,
}

/// Whether `cached` may serve at `now`. It is known current as of the later
/// of its read and the last confirmed generation.
pub fn judge(
    cached: Cached,
    validated_at: Option<Instant>,
    now: Instant,
    settings: &CacheSettings,
) -> Verdict {
    let since_read = now.saturating_duration_since(cached.loaded_at);
    // Negative answers are short-lived; while the store is down they are read
    // again, which fails closed anyway.
    if cached.negative && since_read > settings.negative_ttl {
        return Verdict::Reload;
    }
    let as_of = validated_at.map_or(cached.loaded_at, |v| v.max(cached.loaded_at));
    let age = now.saturating_duration_since(as_of);
    if age <= settings.fresh_window() {
        if since_read > settings.max_age {
            Verdict::Reload
        } else {
            Verdict::Hit
        }
    } else if age <= settings.stale_limit {
        Verdict::StaleHit
    } else {
        Verdict::FailClosed { for_: age }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CacheSettings {
        CacheSettings {
            poll_interval: Duration::from_millis(250),
            poll_timeout: Duration::from_millis(750),
            stale_limit: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(2),
            max_age: Duration::from_secs(60),
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn verdicts() {
        let t0 = Instant::now();
        // (case, read at, negative, generation confirmed at, now, verdict)
        type Case = (
            &'static str,
            Duration,
            bool,
            Option<Duration>,
            Duration,
            Verdict,
        );
        let cases: &[Case] = &[
            ("just read", S(0), false, None, MS(10), Verdict::Hit),
            (
                "confirmed by a poll",
                S(0),
                false,
                Some(S(30)),
                S(30) + MS(900),
                Verdict::Hit,
            ),
            (
                "read after the last poll",
                S(5),
                false,
                Some(S(1)),
                S(5) + MS(500),
                Verdict::Hit,
            ),
            (
                "fresh window's edge",
                S(0),
                false,
                Some(S(0)),
                S(1),
                Verdict::Hit,
            ),
            (
                "polls failing: stale",
                S(0),
                false,
                Some(S(0)),
                S(1) + MS(1),
                Verdict::StaleHit,
            ),
            (
                "stale, at the limit",
                S(0),
                false,
                Some(S(2)),
                S(12),
                Verdict::StaleHit,
            ),
            (
                "past the limit",
                S(0),
                false,
                Some(S(2)),
                S(12) + MS(1),
                Verdict::FailClosed {
                    for_: S(10) + MS(1),
                },
            ),
            (
                "never confirmed, read long ago",
                S(0),
                false,
                None,
                S(20),
                Verdict::FailClosed { for_: S(20) },
            ),
            (
                "old but confirmed: read again",
                S(0),
                false,
                Some(S(70)),
                S(70) + MS(1),
                Verdict::Reload,
            ),
            (
                "old and stale: still serves",
                S(0),
                false,
                Some(S(65)),
                S(70),
                Verdict::StaleHit,
            ),
            (
                "negative, young",
                S(0),
                true,
                Some(S(0)),
                S(1),
                Verdict::Hit,
            ),
            (
                "negative, expired",
                S(0),
                true,
                Some(S(3)),
                S(3),
                Verdict::Reload,
            ),
            (
                "negative, stale but young",
                S(0),
                true,
                Some(S(0)),
                MS(1500),
                Verdict::StaleHit,
            ),
            (
                "negative past the limit: read again",
                S(0),
                true,
                Some(S(0)),
                S(11),
                Verdict::Reload,
            ),
        ];
        for (case, read, negative, validated, now, expected) in cases {
            let cached = Cached {
                loaded_at: t0 + *read,
                negative: *negative,
            };
            let verdict = judge(cached, validated.map(|v| t0 + v), t0 + *now, &settings());
            assert_eq!(verdict, *expected, "{case}");
        }
    }

    #[test]
    fn health_follows_the_last_confirmation() {
        let t0 = Instant::now();
        let cases = [
            (None, S(0), Health::Unknown),
            (Some(S(0)), S(0), Health::Fresh),
            (Some(S(0)), S(1), Health::Fresh),
            (Some(S(0)), S(3), Health::Stale { for_: S(3) }),
            (Some(S(0)), S(10), Health::Stale { for_: S(10) }),
            (Some(S(0)), S(11), Health::FailedClosed { for_: S(11) }),
            // A confirmation "from the future" (clock read order) is fresh.
            (Some(S(5)), S(4), Health::Fresh),
        ];
        for (validated, now, expected) in cases {
            let health = Health::of(validated.map(|v| t0 + v), t0 + now, &settings());
            assert_eq!(health, expected, "validated {validated:?}, now {now:?}");
        }
        assert!(!Health::Stale { for_: S(3) }.differs_from(Health::Stale { for_: S(4) }));
        assert!(Health::Stale { for_: S(3) }.differs_from(Health::Fresh));
        assert_eq!(
            [
                Health::Fresh,
                Health::Stale { for_: S(1) },
                Health::FailedClosed { for_: S(1) }
            ]
            .map(Health::gauge),
            [0, 1, 2]
        );
    }
}
