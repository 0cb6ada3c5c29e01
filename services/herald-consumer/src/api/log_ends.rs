//! The broker's log ends, asked once for all the reads that wait for them together: a read may
//! take the answer of any ask that began after the read arrived (that answer is at least the log
//! end at its arrival). So a burst — thousands of streams reconnecting after a move — costs a few
//! asks per partition, not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::time::Instant;

/// The last log-end answer of a partition and when its ask began.
type Asked = Option<(Instant, (i64, i64))>;

/// The broker's log ends (low and high watermarks), asked once for every read waiting together.
pub struct LogEnds {
    probe: Arc<BaseConsumer>,
    topic: String,
    partitions: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<Asked>>>>,
}

impl LogEnds {
    pub fn new(probe: Arc<BaseConsumer>, topic: &str) -> Self {
        Self { probe, topic: topic.to_string(), partitions: Mutex::new(HashMap::new()) }
    }

    /// The low and high watermarks of `partition` as of some moment after `arrived`, or `None`
    /// when they could not be read within `timeout`.
    pub async fn after(&self, partition: i32, arrived: Instant, timeout: Duration) -> Option<(i64, i64)> {
        let slot = {
            let mut all = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            all.entry(partition).or_default().clone()
        };
        let mut last = tokio::time::timeout(timeout, slot.lock()).await.ok()?;
        if let Some((began, ends)) = *last
            && began >= arrived
        {
            return Some(ends);
        }
        let began = Instant::now();
        let (probe, topic) = (self.probe.clone(), self.topic.clone());
        let left = timeout.saturating_sub(began.saturating_duration_since(arrived));
        let ends =
            tokio::task::spawn_blocking(move || probe.fetch_watermarks(&topic, partition, left)).await.ok().and_then(
                |r| r.inspect_err(|error| tracing::warn!(partition, %error, "reading the log end failed")).ok(),
            )?;
        *last = Some((began, ends));
        Some(ends)
    }
}
