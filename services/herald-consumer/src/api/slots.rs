//! The open streams of a consumer, bounded by `--max-streams` and counted in
//! `herald_consumer_streams`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;

/// The open streams of a consumer, bounded.
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    gauge: IntGauge,
}

/// One open stream; closes it when dropped.
pub struct Slot(Arc<Streams>);

impl Drop for Slot {
    fn drop(&mut self) {
        let now = self.0.open.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.gauge.set(now as i64);
    }
}

impl Streams {
    pub fn new(max: usize, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self { open: AtomicUsize::new(0), max, gauge })
    }

    /// Most streams open at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more stream, unless `max` are open.
    pub fn open(self: &Arc<Self>) -> Option<Slot> {
        let mut now = self.open.load(Ordering::Acquire);
        loop {
            if now >= self.max {
                return None;
            }
            match self.open.compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.gauge.set(now as i64 + 1);
                    return Some(Slot(self.clone()));
                }
                Err(actual) => now = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_and_counted() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let streams = Streams::new(2, gauge.clone());
        let a = streams.open().unwrap();
        let b = streams.open().unwrap();
        assert!(streams.open().is_none());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        let _c = streams.open().unwrap();
        drop(b);
        assert_eq!(gauge.get(), 1);
    }
}
