//! Deterministic fault injection (Web API notes: "Simulator throttling knobs"): whether request
//! number `n` fails, and how, is a pure function of the fault seed and `n` (SplitMix64), so a
//! sequential client sees the same faults on every run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Serve normally.
    None,
    /// 429 with `Retry-After` of this many seconds.
    Throttle(u64),
    /// 503.
    Unavailable,
    /// 200 headers with the full Content-Length, then the connection closes mid-body.
    CutOff,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E3779B97F4A7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// The fault decider.
#[derive(Debug)]
pub(crate) struct Faults {
    seed: u64,
    rate: Mutex<f64>,
    seq: AtomicU64,
}

impl Faults {
    /// A decider with the given seed and rate.
    pub(crate) fn new(seed: u64, rate: f64) -> Self {
        Faults {
            seed,
            rate: Mutex::new(rate),
            seq: AtomicU64::new(0),
        }
    }

    /// Changes the rate for subsequent requests.
    pub(crate) fn set_rate(&self, rate: f64) {
        *self.rate.lock().expect("fault lock") = rate;
    }

    /// Decides the fault of request number `n` (pure).
    fn decide(&self, n: u64) -> Fault {
        let rate = *self.rate.lock().expect("fault lock");
        if rate <= 0.0 {
            return Fault::None;
        }
        let h = splitmix(self.seed ^ splitmix(n));
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        if u >= rate {
            return Fault::None;
        }
        match splitmix(h) % 3 {
            0 => Fault::Throttle(splitmix(h ^ 1) % 2),
            1 => Fault::Unavailable,
            _ => Fault::CutOff,
        }
    }

    /// Decides the fault of the next request.
    pub(crate) fn next(&self) -> Fault {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        self.decide(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_a_function_of_seed_and_sequence() {
        let a = Faults::new(7, 0.3);
        let b = Faults::new(7, 0.3);
        let xs: Vec<Fault> = (0..200).map(|_| a.next()).collect();
        let ys: Vec<Fault> = (0..200).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        let failed = xs.iter().filter(|f| **f != Fault::None).count();
        assert!((30..90).contains(&failed), "{failed}");
    }
}
