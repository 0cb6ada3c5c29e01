//! Pages of a user's notifications: `?limit=N` (1–500) gives the N newest, oldest first, and a
//! cursor to the older ones; `&before=<cursor>` continues from a cursor. A cursor is opaque to
//! clients: the position (partition, offset) and time of the oldest notification of the page
//! before, base64url-encoded, so that it stays valid however many notifications arrive after it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::store::Stored;

/// Most notifications in one page.
pub const MAX_LIMIT: usize = 500;

/// Where a page ends: notifications strictly older than this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub partition: i32,
    pub offset: i64,
    pub sent_at_ms: i64,
}

impl Cursor {
    pub fn of(entry: &Stored) -> Self {
        Self { partition: entry.partition, offset: entry.offset, sent_at_ms: entry.sent_at_ms }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}:{}", self.partition, self.offset, self.sent_at_ms))
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.as_bytes()).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let mut parts = text.strip_prefix("v1:")?.split(':');
        let cursor = Self {
            partition: parts.next()?.parse().ok()?,
            offset: parts.next()?.parse().ok()?,
            sent_at_ms: parts.next()?.parse().ok()?,
        };
        (parts.next().is_none() && cursor.partition >= 0 && cursor.offset >= 0).then_some(cursor)
    }

    /// Whether `entry` comes after the cursor's notification (the opposite of
    /// [`Cursor::is_after`], the cursor's own notification being neither).
    pub fn is_before(&self, entry: &Stored) -> bool {
        if entry.partition == self.partition {
            entry.offset > self.offset
        } else {
            (entry.sent_at_ms, entry.partition) > (self.sent_at_ms, self.partition)
        }
    }

    /// Whether `entry` comes before the cursor's notification: earlier in the same partition, or
    /// sent earlier when it is in another one.
    pub fn is_after(&self, entry: &Stored) -> bool {
        if entry.partition == self.partition {
            entry.offset < self.offset
        } else {
            (entry.sent_at_ms, entry.partition) < (self.sent_at_ms, self.partition)
        }
    }
}

/// Most categories one read may filter by.
pub const MAX_CATEGORIES: usize = 20;

/// What a read asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// `None`: every stored notification, without `next` (the answer as before pages existed).
    pub limit: Option<usize>,
    pub before: Option<Cursor>,
    /// `?partition=P`: only what one partition holds — a consumer's request to another for its
    /// part of a merged read (a user of a grown topic), never a client's.
    pub partition: Option<i32>,
    /// `?category=a,b`: only notifications of one of these categories (pages, cursors and
    /// `unread` included).
    pub categories: Option<Vec<String>>,
}

impl Query {
    /// Whether the filter lets `entry` through.
    pub fn matches(&self, entry: &Stored) -> bool {
        match &self.categories {
            None => true,
            Some(wanted) => entry.packed().category().is_some_and(|c| wanted.iter().any(|w| w == c)),
        }
    }

    /// The query string this member would send for the same read (`limit`, `before`,
    /// `category`), written anew from what it understood; empty when there is none.
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
            if let Some(before) = &self.before {
                parts.push(format!("before={}", before.encode()));
            }
        }
        if let Some(categories) = &self.categories {
            // Categories are a-z 0-9 . _ - only: nothing to escape.
            parts.push(format!("category={}", categories.join(",")));
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }
}

/// Parses the query string of a read; the error is the message of a 400.
pub fn parse_query(raw: Option<&str>) -> Result<Query, String> {
    let mut query = Query::default();
    let (mut limit, mut before, mut partition, mut category) = (None, None, None, None);
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("{name} is not valid UTF-8"))?;
        let slot = match name {
            "limit" => &mut limit,
            "before" => &mut before,
            "partition" => &mut partition,
            "category" => &mut category,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(format!("{name} is given more than once"));
        }
    }
    if let Some(raw) = limit {
        let n = raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n) && raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("limit must be a whole number from 1 to {MAX_LIMIT}"))?;
        query.limit = Some(n);
    }
    if let Some(raw) = before {
        if query.limit.is_none() {
            return Err("before needs a limit".into());
        }
        query.before = Some(Cursor::decode(&raw).ok_or("before is not a cursor this API gave out")?);
    }
    if let Some(raw) = category {
        let wanted: Vec<String> = raw.split(',').map(str::to_string).collect();
        if wanted.len() > MAX_CATEGORIES {
            return Err(format!("category holds at most {MAX_CATEGORIES} categories"));
        }
        for c in &wanted {
            herald_model::content::check_category(c)?;
        }
        query.categories = Some(wanted);
    }
    if let Some(raw) = partition {
        if query.limit.is_some() {
            return Err("partition takes no limit".into());
        }
        let p = raw
            .parse::<i32>()
            .ok()
            .filter(|p| *p >= 0 && raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or("partition must be a whole number")?;
        query.partition = Some(p);
    }
    Ok(query)
}

/// The notifications a query selects from a user's `entries` (oldest first), oldest first, and
/// the cursor to the older ones (`None` when nothing older is there). `shown` says which entries
/// a read may show at all.
pub fn select<'a>(
    entries: impl DoubleEndedIterator<Item = &'a Stored>,
    query: &Query,
    shown: impl Fn(&Stored) -> bool,
) -> (Vec<&'a Stored>, Option<Cursor>) {
    let older = |e: &Stored| query.before.is_none_or(|c| c.is_after(e));
    let mut candidates = entries.rev().filter(|e| shown(e) && older(e));
    let Some(limit) = query.limit else {
        let mut all: Vec<&Stored> = candidates.collect();
        all.reverse();
        return (all, None);
    };
    let mut page: Vec<&Stored> = candidates.by_ref().take(limit).collect();
    let next = match (candidates.next(), page.last()) {
        (Some(_), Some(oldest)) => Some(Cursor::of(oldest)),
        _ => None,
    };
    page.reverse();
    (page, next)
}

/// Merges each partition's notifications (each list in log order) into one list in send order:
/// the next one is always the earliest sent of the lists' heads (on a tie, the lower partition),
/// so each partition keeps its log order and a [`Cursor`] compares the same way. A notification
/// in more than one list (a retry that straddled the topic's growth wrote it to the user's old
/// and new partitions under one id) is kept once, where it came first, and read if either copy
/// is. Keeps the newest `max`.
pub fn merge(lists: Vec<Vec<Stored>>, max: usize) -> Vec<Stored> {
    let mut lists: Vec<std::collections::VecDeque<Stored>> = lists.into_iter().map(Into::into).collect();
    let mut merged: Vec<Stored> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
    let mut kept_at: std::collections::HashMap<uuid::Uuid, usize> = std::collections::HashMap::new();
    let several = lists.len() > 1;
    loop {
        let next = lists
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.front().map(|e| ((e.sent_at_ms, e.partition), i)))
            .min()
            .map(|(_, i)| i);
        let Some(entry) = next.and_then(|i| lists.get_mut(i)).and_then(|l| l.pop_front()) else { break };
        // One partition's list holds each id once already (the store drops redeliveries).
        if several {
            match kept_at.entry(entry.id()) {
                std::collections::hash_map::Entry::Occupied(at) => {
                    if let Some(kept) = merged.get_mut(*at.get()) {
                        kept.read |= entry.read;
                    }
                    continue;
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(merged.len());
                }
            }
        }
        merged.push(entry);
    }
    let extra = merged.len().saturating_sub(max);
    merged.drain(..extra);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{decoded, notification};

    fn entries(n: i64) -> Vec<Stored> {
        (0..n).map(|i| decoded(&notification(2, &format!("m{i}")), |r| Stored::new(r, 3, 100 + i))).collect()
    }

    fn offsets(page: &[&Stored]) -> Vec<i64> {
        page.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn pages_walk_back_without_overlap_or_gaps() {
        let all = entries(250);
        let mut query = parse_query(Some("limit=100")).unwrap();
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (page, next) = select(all.iter(), &query, |_| true);
            assert!(page.windows(2).all(|w| w[0].offset < w[1].offset), "oldest first within a page");
            seen.splice(0..0, offsets(&page));
            pages += 1;
            match next {
                Some(c) => query = parse_query(Some(&format!("limit=100&before={}", c.encode()))).unwrap(),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, (100..350).collect::<Vec<_>>());
    }

    #[test]
    fn without_a_limit_everything_shown_comes_back() {
        let all = entries(5);
        let (page, next) = select(all.iter(), &parse_query(None).unwrap(), |e| e.offset != 102);
        assert_eq!(offsets(&page), [100, 101, 103, 104]);
        assert_eq!(next, None);
        // An exact fit has no next page.
        let (page, next) = select(all.iter(), &parse_query(Some("limit=5")).unwrap(), |_| true);
        assert_eq!((page.len(), next), (5, None));
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        for (raw, says) in [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=-1", "limit"),
            ("limit=1e2", "limit"),
            ("limit=", "limit"),
            ("limit=5&limit=6", "more than once"),
            ("before=djE6MzoxMDA6MA", "needs a limit"),
            ("limit=5&before=nope", "cursor"),
            ("limit=5&before=%FF", "UTF-8"),
            ("limit=5&before=djE6LTE6MDow", "cursor"),
        ] {
            let e = parse_query(Some(raw)).unwrap_err();
            assert!(e.contains(says), "{raw}: {e}");
        }
        assert_eq!(parse_query(Some("other=1&limit=7")).unwrap().limit, Some(7));
    }

    #[test]
    fn cursors_round_trip_and_order_across_partitions() {
        let c = Cursor { partition: 4, offset: 17, sent_at_ms: 1_700_000_000_123 };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        // Partition 3, offsets 100–102, sent at 100, 200 and 300.
        let mut all = entries(3);
        for (e, t) in all.iter_mut().zip([100, 200, 300]) {
            e.sent_at_ms = t;
        }
        let order = |f: &dyn Fn(&Stored) -> bool| all.iter().map(f).collect::<Vec<_>>();
        // In another partition a cursor compares by time, then by partition: sent earlier, or at
        // the same time in a lower partition, comes before it; the rest after.
        let other = Cursor { partition: 4, offset: 17, sent_at_ms: 200 };
        assert_eq!(order(&|e| other.is_after(e)), [true, true, false]);
        assert_eq!(order(&|e| other.is_before(e)), [false, false, true]);
        let lower = Cursor { partition: 2, offset: 17, sent_at_ms: 200 };
        assert_eq!(order(&|e| lower.is_after(e)), [true, false, false]);
        assert_eq!(order(&|e| lower.is_before(e)), [false, true, true]);
        // In its own partition by offset, whatever the times; its own notification is neither.
        let same = Cursor { partition: 3, offset: 101, sent_at_ms: 0 };
        assert_eq!(order(&|e| same.is_after(e)), [true, false, false]);
        assert_eq!(order(&|e| same.is_before(e)), [false, false, true]);
    }

    #[test]
    fn a_category_filter_selects_pages_and_travels_in_the_rebuilt_query() {
        // Offsets 0..12; every third is "orders", every third + 1 "billing", the rest none.
        let all: Vec<Stored> = (0..12)
            .map(|i| {
                let mut n = notification(2, &format!("m{i}"));
                n.category = match i % 3 {
                    0 => Some("orders".into()),
                    1 => Some("billing".into()),
                    _ => None,
                };
                decoded(&n, |r| Stored::new(r, 3, i))
            })
            .collect();
        let mut query = parse_query(Some("limit=2&category=orders")).unwrap();
        assert_eq!(query.categories, Some(vec!["orders".to_string()]));
        let mut seen = Vec::new();
        loop {
            let (page, next) = select(all.iter(), &query, |e| query.matches(e));
            seen.splice(0..0, offsets(&page));
            match next {
                Some(c) => {
                    let rebuilt = Query { before: Some(c), ..query.clone() }.to_query_string();
                    assert!(
                        rebuilt.contains("category=orders") && rebuilt.starts_with("?limit=2&before="),
                        "{rebuilt}"
                    );
                    query = parse_query(rebuilt.strip_prefix('?')).unwrap();
                }
                None => break,
            }
        }
        assert_eq!(seen, [0, 3, 6, 9]);
        let both = parse_query(Some("category=orders,billing")).unwrap();
        assert_eq!(all.iter().filter(|e| both.matches(e)).count(), 8);
        assert_eq!(both.to_query_string(), "?category=orders,billing");
        assert_eq!(Query::default().to_query_string(), "");
        for bad in ["category=", "category=Orders", "category=a,,b", "category=a%20b"] {
            assert!(parse_query(Some(bad)).unwrap_err().contains("category must be"), "{bad}");
        }
        let many = format!("category={}", vec!["a"; 21].join(","));
        assert!(parse_query(Some(&many)).unwrap_err().contains("at most 20"));
    }

    #[test]
    fn a_merged_inbox_is_in_send_order_and_pages_walk_it_without_overlap_or_gaps() {
        // Partition 1 (before growth) holds sends at t = 0, 10, 20, … and a late one from a
        // producer that still mapped the user there; partition 4 holds the rest.
        let mut old: Vec<Stored> = entries(30);
        for (i, e) in old.iter_mut().enumerate() {
            (e.partition, e.offset, e.sent_at_ms) = (1, i as i64, i as i64 * 10);
        }
        old[29].sent_at_ms = 1_000;
        let mut new: Vec<Stored> = entries(40);
        for (i, e) in new.iter_mut().enumerate() {
            (e.partition, e.offset, e.sent_at_ms) = (4, i as i64, 285 + i as i64 * 10);
        }
        let merged = merge(vec![old.clone(), new.clone()], usize::MAX);
        assert_eq!(merged.len(), 70);
        let times: Vec<i64> = merged.iter().map(|e| e.sent_at_ms).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        for p in [1, 4] {
            let offsets: Vec<i64> = merged.iter().filter(|e| e.partition == p).map(|e| e.offset).collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {p} keeps its log order");
        }
        // Pages of 16 over the merged list: every notification once, in merged order.
        let mut query = parse_query(Some("limit=16")).unwrap();
        let mut seen: Vec<(i32, i64)> = Vec::new();
        loop {
            let (page, next) = select(merged.iter(), &query, |_| true);
            seen.splice(0..0, page.iter().map(|e| (e.partition, e.offset)));
            match next {
                Some(c) => query = parse_query(Some(&format!("limit=16&before={}", c.encode()))).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, merged.iter().map(|e| (e.partition, e.offset)).collect::<Vec<_>>());
        // The newest `max` are kept.
        let kept = merge(vec![old, new], 25);
        assert_eq!(kept.len(), 25);
        assert_eq!(kept.last().map(|e| e.sent_at_ms), Some(1_000));
    }

    #[test]
    fn a_notification_in_two_partitions_is_merged_once_and_read_if_either_copy_is() {
        // A retry straddled the growth: the same notification in partition 1 and, sent again
        // later, in partition 4, where a read marker covered it.
        let n = notification(2, "retried");
        let first = decoded(&n, |r| Stored::new(r, 1, 7));
        let mut again = decoded(&n, |r| Stored::new(r, 4, 2));
        again.sent_at_ms += 50;
        again.read = true;
        let mut others = entries(3);
        for (i, e) in others.iter_mut().enumerate() {
            (e.partition, e.offset, e.sent_at_ms) = (4, 10 + i as i64, first.sent_at_ms + 100 + i as i64);
        }
        let mut new_partition = vec![again];
        new_partition.extend(others);
        let merged = merge(vec![vec![first], new_partition], usize::MAX);
        assert_eq!(merged.len(), 4);
        assert_eq!(merged.iter().filter(|e| e.id() == n.id).count(), 1);
        assert_eq!((merged[0].partition, merged[0].offset, merged[0].read), (1, 7, true), "the first copy, read");
    }

    #[test]
    fn a_part_request_names_one_partition_and_no_page() {
        assert_eq!(parse_query(Some("partition=3")).unwrap().partition, Some(3));
        for raw in ["partition=-1", "partition=x", "partition=3&limit=5", "partition=1&partition=2"] {
            assert!(parse_query(Some(raw)).is_err(), "{raw}");
        }
    }
}
