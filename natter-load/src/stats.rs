//! Percentiles and the two report formats: a human table and the one machine-readable
//! `natter-load-result key=value ...` line.

use std::fmt::Display;

/// Nearest-rank percentile (`p` in 0..=100) of an ascending-sorted slice; `None` if empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency summary in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Latency {
    /// Sorts `samples` in place and summarises them (all zero if empty).
    pub fn from_samples(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        Latency {
            p50: percentile(samples, 50.0).unwrap_or(0),
            p99: percentile(samples, 99.0).unwrap_or(0),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// A log-linear histogram of ns values: 64 sub-buckets per power of two, so a percentile is
/// within 1/64 (1.6 %) of the true value, in fixed memory (~30 KiB) however many samples.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; Self::index(u64::MAX) + 1],
            count: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros() as usize; // >= 6
        let sub = ((v >> (exp - 6)) & 63) as usize;
        (exp - 5) * 64 + sub
    }

    /// The middle of bucket `i`'s value range.
    fn value(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        let exp = i / 64 + 5;
        let lower = (64 + (i % 64) as u64) << (exp - 6);
        lower + ((1u64 << (exp - 6)) >> 1)
    }

    /// Adds one sample.
    pub fn record(&mut self, v: u64) {
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Nearest-rank percentile (approximate, never above the maximum); `None` if empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.clamp(1, self.count);
        if rank == self.count {
            return Some(self.max);
        }
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::value(i).min(self.max));
            }
        }
        Some(self.max)
    }

    /// p50, p99 and max.
    pub fn latency(&self) -> Latency {
        Latency {
            p50: self.percentile(50.0).unwrap_or(0),
            p99: self.percentile(99.0).unwrap_or(0),
            max: self.max,
        }
    }
}

/// A report: rows for the human table, and the same figures as `key=value` pairs.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<(String, String)>,
    pairs: Vec<(String, String)>,
    failures: Vec<String>,
}

impl Report {
    /// Starts a report for `scenario` (it becomes the `scenario=` pair).
    pub fn new(scenario: &str) -> Report {
        let mut r = Report::default();
        r.pairs.push(("scenario".into(), scenario.into()));
        r
    }

    /// Adds one figure: `label` and `unit` for the table, `key` for the summary line.
    pub fn add(&mut self, key: &str, label: &str, value: impl Display, unit: &str) {
        let v = value.to_string();
        let shown = if unit.is_empty() {
            v.clone()
        } else {
            format!("{v} {unit}")
        };
        self.rows.push((label.into(), shown));
        self.pairs.push((key.into(), v));
    }

    /// Adds a figure only to the summary line.
    pub fn add_key(&mut self, key: &str, value: impl Display) {
        self.pairs.push((key.into(), value.to_string()));
    }

    /// Marks the run as failed (a check did not hold); the report is still printed.
    pub fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    /// The failed checks, joined; `None` when every check held.
    pub fn failure(&self) -> Option<String> {
        (!self.failures.is_empty()).then(|| self.failures.join("; "))
    }

    /// The value of `key` in the summary line.
    #[cfg(test)]
    pub fn value(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The human table.
    pub fn table(&self) -> String {
        let w = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut s = String::new();
        for (label, value) in &self.rows {
            s.push_str(&format!("  {label:<w$}  {value}\n"));
        }
        s
    }

    /// The one summary line: `natter-load-result key=value ...` (values have no spaces).
    pub fn result_line(&self) -> String {
        let mut s = String::from("natter-load-result");
        for (k, v) in &self.pairs {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(&v.replace(char::is_whitespace, "_"));
        }
        s.push_str(if self.failures.is_empty() {
            " ok=true"
        } else {
            " ok=false"
        });
        s
    }
}

/// Formats ns as µs with one decimal, for tables.
pub fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
    }

    #[test]
    fn latency_summary() {
        let mut v = vec![5, 1, 9, 3];
        let l = Latency::from_samples(&mut v);
        assert_eq!((l.p50, l.p99, l.max), (3, 9, 9));
        assert_eq!(Latency::from_samples(&mut []), Latency::default());
    }

    #[test]
    fn histogram_is_close_to_exact() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        let mut exact: Vec<u64> = (0..100_000u64).map(|i| i * 7919 % 1_000_003).collect();
        for &v in &exact {
            h.record(v);
        }
        exact.sort_unstable();
        for p in [1.0, 50.0, 90.0, 99.0, 100.0] {
            let want = percentile(&exact, p).unwrap() as f64;
            let got = h.percentile(p).unwrap() as f64;
            assert!(
                (got - want).abs() <= want / 64.0 + 1.0,
                "p{p}: {got} vs {want}"
            );
        }
        assert_eq!(h.latency().max, *exact.last().unwrap());
        let mut small = Histogram::default();
        small.record(5);
        assert_eq!(
            small.latency(),
            Latency {
                p50: 5,
                p99: 5,
                max: 5
            }
        );
        small.record(u64::MAX);
        assert_eq!(small.percentile(100.0), Some(u64::MAX));
    }

    #[test]
    fn report_formats() {
        let mut r = Report::new("idle");
        r.add("n", "clients", 10, "");
        r.add("rss_kb", "server RSS", 1234, "KiB");
        r.add_key("note", "a b");
        assert_eq!(
            r.result_line(),
            "natter-load-result scenario=idle n=10 rss_kb=1234 note=a_b ok=true"
        );
        assert_eq!(r.table(), "  clients     10\n  server RSS  1234 KiB\n");
        assert_eq!(r.failure(), None);
        r.fail("lost 3".into());
        assert!(r.result_line().ends_with(" ok=false"));
        assert_eq!(r.failure().as_deref(), Some("lost 3"));
    }
}
