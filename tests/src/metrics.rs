//! Reading values out of Prometheus text.

/// The value of the sample `name{labels}` where every `(k, v)` in `labels` matches; summed over
/// all matching series.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let ok = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// How many series of `name` match `labels`.
pub fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .count()
}

/// The `q` quantile of a Prometheus histogram given as (upper bound, cumulative count) pairs,
/// interpolated within the bucket as `histogram_quantile` does.
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, count) in buckets {
        if count >= rank {
            let inside = count - below;
            return if inside == 0.0 { upper } else { lower + (upper - lower) * (rank - below) / inside };
        }
        (lower, below) = (upper, count);
    }
    lower
}

/// The end-to-end histogram of the consumers behind `texts`, summed: (bound, cumulative count).
pub fn end_to_end_buckets(texts: &[String]) -> Vec<(f64, f64)> {
    const BOUNDS: [&str; 16] = [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60",
        "300",
    ];
    BOUNDS
        .iter()
        .map(|le| {
            let count =
                texts.iter().map(|t| sum(t, "herald_consumer_end_to_end_latency_seconds_bucket", &[("le", le)])).sum();
            (le.parse().unwrap_or(f64::NAN), count)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let buckets = [(0.001, 0.0), (0.005, 50.0), (0.01, 100.0), (0.1, 100.0)];
        assert!((histogram_quantile(&buckets, 0.5) - 0.005).abs() < 1e-12);
        assert!((histogram_quantile(&buckets, 0.99) - 0.0099).abs() < 1e-12);
        assert!(histogram_quantile(&[(0.001, 0.0)], 0.5).is_nan(), "no observations");
        let text = "herald_consumer_end_to_end_latency_seconds_bucket{le=\"0.005\"} 3\n";
        assert_eq!(end_to_end_buckets(&[text.to_string(), text.to_string()])[2], (0.005, 6.0));
    }
}
