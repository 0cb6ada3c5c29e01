//! Which partition a user's notifications land on: Kafka's default (Java) partitioner,
//! `murmur2(key) & 0x7fffffff % partitions`, which librdkafka's `murmur2_random` matches for
//! non-empty keys.

use crate::user_id::UserId;

/// Kafka's murmur2 hash of `data`, as the Java client computes it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` in a topic of `partitions` partitions (`partitions` > 0).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// The partition of a user's notifications (their record key's).
pub fn partition_for_user(user: &UserId, partitions: i32) -> i32 {
    partition_for_key(user.key().as_bytes(), partitions)
}

/// Most partition counts a history may list (the CRD's `partitionHistory` holds as many).
pub const MAX_HISTORY: usize = 32;

/// Every partition count a topic has had, oldest first (`--partition-history 3,6`). A topic that
/// grew maps some users to a new partition while their older notifications stay in the old one:
/// a user's inbox is the union of the partitions each count maps them to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionHistory(Vec<i32>);

impl PartitionHistory {
    /// Parses `3,6,12`: positive counts, each larger than the one before, at most
    /// [`MAX_HISTORY`]; the error says what is wrong.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut counts = Vec::new();
        for part in value.split(',').map(str::trim) {
            let n = part
                .parse::<i32>()
                .ok()
                .filter(|n| *n > 0 && part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("{part:?} is not a partition count (a whole number above zero)"))?;
            if counts.last().is_some_and(|last| *last >= n) {
                return Err(format!("partition counts must grow: {n} follows {}", counts.last().copied().unwrap_or(0)));
            }
            counts.push(n);
        }
        if counts.len() > MAX_HISTORY {
            return Err(format!("at most {MAX_HISTORY} partition counts"));
        }
        Ok(Self(counts))
    }

    /// The counts, oldest first.
    pub fn counts(&self) -> &[i32] {
        &self.0
    }

    /// The partitions holding `user`'s notifications in a topic of `current` partitions: the
    /// one of each earlier count (up to `current`), without repeats, oldest mapping first and
    /// the current one last.
    pub fn partitions_for_user(&self, user: &UserId, current: i32) -> Vec<i32> {
        let now = partition_for_user(user, current);
        let mut partitions: Vec<i32> = Vec::with_capacity(self.0.len() + 1);
        for count in self.0.iter().filter(|c| **c < current) {
            let p = partition_for_user(user, *count);
            if p != now && !partitions.contains(&p) {
                partitions.push(p);
            }
        }
        partitions.push(now);
        partitions
    }
}

impl std::fmt::Display for PartitionHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts: Vec<String> = self.0.iter().map(i32::to_string).collect();
        f.write_str(&counts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_parses_growing_counts_only() {
        assert_eq!(PartitionHistory::parse("3,6, 12").unwrap().counts(), &[3, 6, 12]);
        assert_eq!(PartitionHistory::parse("6").unwrap().to_string(), "6");
        for bad in ["", "3,,6", "0", "-1", "+3", "6,3", "3,3", "x", "3;6"] {
            assert!(PartitionHistory::parse(bad).is_err(), "{bad:?}");
        }
        let long: Vec<String> = (1..=33).map(|n| n.to_string()).collect();
        assert!(PartitionHistory::parse(&long.join(",")).is_err());
    }

    #[test]
    fn a_user_maps_to_each_counts_partition_once_current_last() {
        let history = PartitionHistory::parse("3,6").unwrap();
        let mut grown = 0;
        for user in (1..500u64).map(UserId::from) {
            let parts = history.partitions_for_user(&user, 6);
            assert_eq!(*parts.last().unwrap(), partition_for_user(&user, 6));
            assert!(parts.contains(&partition_for_user(&user, 3)));
            assert!(parts.len() <= 2);
            if parts.len() == 2 {
                grown += 1;
            }
            // Counts above the topic's are not partitions of it (yet).
            assert_eq!(history.partitions_for_user(&user, 3), vec![partition_for_user(&user, 3)]);
        }
        // Half the users of a topic grown from 3 to 6 partitions move.
        assert!((150..350).contains(&grown), "{grown}");
        let seven = UserId::from(7);
        assert_eq!(PartitionHistory::default().partitions_for_user(&seven, 6), vec![partition_for_user(&seven, 6)]);
    }

    #[test]
    fn matches_the_java_client() {
        // Vectors from Apache Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), *want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partitions_are_in_range() {
        for user in (1..1000u64).map(UserId::from) {
            let p = partition_for_user(&user, 6);
            assert!((0..6).contains(&p));
        }
    }
}
