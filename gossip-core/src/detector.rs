//! Phi-accrual failure detection (Hayashibara et al., 2004), an optional alternative to SWIM's
//! fixed probe timeouts for members whose response times vary widely (browser tabs whose timers
//! the browser throttles, members on congested links).
//!
//! Instead of "no ack within the timeout", the question is "how unlikely is this silence, given
//! the gaps seen so far": phi = -log10(P(gap >= elapsed)). Gaps are modelled as a normal
//! distribution over a sliding window, with the logistic approximation of its tail used by Akka
//! and Cassandra. Arrivals are any authenticated packet from the member, so probes, acks and
//! gossip all count as heartbeats.

use std::collections::VecDeque;

use crate::time::Instant;

/// Settings of the phi-accrual detector (chitchat's defaults: threshold 8, window 1000).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiConfig {
    /// Suspect a member once phi reaches this (8 means a 1-in-10^8 chance the silence is normal).
    pub threshold: f64,
    /// Inter-arrival samples kept per member.
    pub window: usize,
    /// Floor on the standard deviation, so a very regular member is not suspected over jitter.
    pub min_std_dev_ms: f64,
    /// A pause always tolerated on top of the expected gap (GC pauses, tab throttling).
    pub acceptable_pause_ms: f64,
}

impl Default for PhiConfig {
    fn default() -> Self {
        PhiConfig {
            threshold: 8.0,
            window: 1_000,
            min_std_dev_ms: 100.0,
            acceptable_pause_ms: 0.0,
        }
    }
}

/// Arrival history of one member.
#[derive(Debug, Clone, Default)]
pub struct PhiDetector {
    gaps_ms: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    last: Option<Instant>,
}

impl PhiDetector {
    /// Records an arrival at `now`.
    pub fn heartbeat(&mut self, now: Instant, config: &PhiConfig) {
        if let Some(last) = self.last {
            let gap = now.micros_since(last) as f64 / 1_000.0;
            self.gaps_ms.push_back(gap);
            self.sum += gap;
            self.sum_sq += gap * gap;
            while self.gaps_ms.len() > config.window.max(1) {
                if let Some(old) = self.gaps_ms.pop_front() {
                    self.sum -= old;
                    self.sum_sq -= old * old;
                }
            }
        }
        self.last = Some(now);
    }

    /// Suspicion level at `now`; `None` until two arrivals were seen (nothing to judge by).
    pub fn phi(&self, now: Instant, config: &PhiConfig) -> Option<f64> {
        let last = self.last?;
        let n = self.gaps_ms.len();
        if n == 0 {
            return None;
        }
        let mean = self.sum / n as f64 + config.acceptable_pause_ms;
        let variance = (self.sum_sq / n as f64 - (self.sum / n as f64).powi(2)).max(0.0);
        let std_dev = variance.sqrt().max(config.min_std_dev_ms);
        let elapsed = now.micros_since(last) as f64 / 1_000.0;
        let y = (elapsed - mean) / std_dev;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        // P(gap > elapsed) = e / (1 + e) for y > 0, written to stay finite for large |y|.
        let p_later = if elapsed > mean {
            e / (1.0 + e)
        } else {
            1.0 - 1.0 / (1.0 + e)
        };
        Some(-p_later.max(f64::MIN_POSITIVE).log10())
    }

    /// Whether phi has reached the threshold.
    pub fn is_suspect(&self, now: Instant, config: &PhiConfig) -> bool {
        self.phi(now, config)
            .is_some_and(|phi| phi >= config.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beats(every_ms: u64, count: u64, jitter: impl Fn(u64) -> u64) -> (PhiDetector, Instant) {
        let c = PhiConfig::default();
        let mut d = PhiDetector::default();
        let mut t = 0;
        for i in 0..count {
            t += every_ms + jitter(i);
            d.heartbeat(Instant::from_millis(t), &c);
        }
        (d, Instant::from_millis(t))
    }

    #[test]
    fn no_verdict_before_two_arrivals() {
        let c = PhiConfig::default();
        let mut d = PhiDetector::default();
        assert_eq!(d.phi(Instant::from_millis(5), &c), None);
        d.heartbeat(Instant::from_millis(10), &c);
        assert_eq!(d.phi(Instant::from_millis(10_000), &c), None);
    }

    #[test]
    fn phi_grows_with_silence() {
        let c = PhiConfig::default();
        let (d, last) = beats(1_000, 100, |i| (i * 37) % 100);
        let at = |ms: u64| d.phi(last.plus_millis(ms), &c).unwrap();
        assert!(at(0) < 0.5, "just heard from it: {}", at(0));
        assert!(at(1_000) < 1.0, "a normal gap: {}", at(1_000));
        assert!(at(1_500) > at(1_100));
        assert!(at(3_000) > c.threshold, "three missed beats: {}", at(3_000));
        assert!(d.is_suspect(last.plus_millis(10_000), &c));
        assert!(at(1_000_000).is_finite());
    }

    #[test]
    fn irregular_members_get_more_patience() {
        let c = PhiConfig::default();
        let (steady, s_last) = beats(1_000, 200, |_| 0);
        let (bursty, b_last) = beats(1_000, 200, |i| if i % 4 == 0 { 2_000 } else { 0 });
        let steady_phi = steady.phi(s_last.plus_millis(2_500), &c).unwrap();
        let bursty_phi = bursty.phi(b_last.plus_millis(2_500), &c).unwrap();
        assert!(
            bursty_phi < steady_phi,
            "bursty {bursty_phi} vs steady {steady_phi}"
        );
        assert!(!bursty.is_suspect(b_last.plus_millis(2_500), &c));
    }

    #[test]
    fn window_is_bounded() {
        let c = PhiConfig {
            window: 10,
            ..PhiConfig::default()
        };
        let mut d = PhiDetector::default();
        for i in 0..1_000 {
            d.heartbeat(Instant::from_millis(i * 100), &c);
        }
        assert_eq!(d.gaps_ms.len(), 10);
        // Old slow gaps are forgotten: after a switch to fast beats, silence is judged by them.
        let mut d = PhiDetector::default();
        for i in 0..20 {
            d.heartbeat(Instant::from_millis(i * 5_000), &c);
        }
        let t0 = 20 * 5_000;
        for i in 0..20 {
            d.heartbeat(Instant::from_millis(t0 + i * 100), &c);
        }
        assert!(d.is_suspect(Instant::from_millis(t0 + 19 * 100 + 2_000), &c));
    }
}
