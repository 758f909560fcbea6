//! The result of a bench run: a human summary and one JSON line with a fixed shape.

use std::{fs::OpenOptions, io::Write, path::Path};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds, from a histogram of microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    /// `None` when the histogram is empty.
    pub(crate) fn from_micros(hist: &Histogram<u64>) -> Option<Self> {
        if hist.is_empty() {
            return None;
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Some(Latency {
            p50_ms: ms(hist.value_at_quantile(0.50)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            p999_ms: ms(hist.value_at_quantile(0.999)),
            max_ms: ms(hist.max()),
        })
    }
}

/// One bench result. Every field is always present in the JSON line (`null` when it does
/// not apply, e.g. latency for the consumer bench), so lines of both kinds tabulate together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct BenchReport {
    /// `produce` or `consume`.
    pub(crate) kind: &'static str,
    pub(crate) topic: String,
    /// Records acknowledged (produce) or read (consume).
    pub(crate) records: u64,
    /// Value size per record (consume: the mean size of what was read).
    pub(crate) record_bytes: u64,
    /// `all`, `1` or `0`; `null` for consume.
    pub(crate) acks: Option<String>,
    /// Target records/s, 0 = unlimited; `null` for consume.
    pub(crate) rate_limit: Option<u64>,
    pub(crate) seconds: f64,
    /// Megabytes (1,000,000 bytes) of record values per second.
    pub(crate) mb_per_s: f64,
    pub(crate) records_per_s: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p999_ms: Option<f64>,
    pub(crate) max_ms: Option<f64>,
}

impl BenchReport {
    /// Builds a report from raw counts; `bytes` is the total payload moved.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        kind: &'static str,
        topic: &str,
        records: u64,
        record_bytes: u64,
        bytes: u64,
        seconds: f64,
        acks: Option<&str>,
        rate_limit: Option<u64>,
        latency: Option<Latency>,
    ) -> Self {
        let secs = seconds.max(1e-9);
        BenchReport {
            kind,
            topic: topic.to_string(),
            records,
            record_bytes,
            acks: acks.map(str::to_string),
            rate_limit,
            seconds: round3(seconds),
            mb_per_s: round3(bytes as f64 / 1e6 / secs),
            records_per_s: (records as f64 / secs).round(),
            p50_ms: latency.map(|l| l.p50_ms),
            p99_ms: latency.map(|l| l.p99_ms),
            p999_ms: latency.map(|l| l.p999_ms),
            max_ms: latency.map(|l| l.max_ms),
        }
    }

    /// The JSON line (no trailing newline).
    pub(crate) fn json_line(&self) -> String {
        serde_json::to_string(self).expect("a bench report always serializes")
    }

    /// The human summary, several lines.
    pub(crate) fn human(&self) -> String {
        let mut s = format!(
            "{} records in {:.2}s: {:.0} records/s, {:.2} MB/s (MB = 1,000,000 bytes; {} B records)",
            self.records, self.seconds, self.records_per_s, self.mb_per_s, self.record_bytes
        );
        if let (Some(p50), Some(p99), Some(p999), Some(max)) =
            (self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms)
        {
            s.push_str(&format!(
                "\nlatency (send -> acknowledgement): p50 {p50:.3} ms, p99 {p99:.3} ms, p99.9 {p999:.3} ms, max {max:.3} ms"
            ));
        }
        s
    }

    /// Prints the JSON line to stdout and appends it to `path` if given.
    pub(crate) fn emit(&self, path: Option<&Path>) -> anyhow::Result<()> {
        let line = self.json_line();
        crate::cli::common::outln!("{line}");
        if let Some(path) = path {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("could not open --json {}", path.display()))?;
            writeln!(file, "{line}")
                .with_context(|| format!("could not write --json {}", path.display()))?;
        }
        Ok(())
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A histogram of latencies in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_every_field() {
        let mut hist = latency_histogram();
        for us in 1..=1000u64 {
            hist.record(us * 10).unwrap();
        }
        let latency = Latency::from_micros(&hist).unwrap();
        let report = BenchReport::new(
            "produce",
            "bench",
            1_000,
            1024,
            1_024_000,
            2.0,
            Some("all"),
            Some(500),
            Some(latency),
        );
        let value: serde_json::Value = serde_json::from_str(&report.json_line()).unwrap();
        let obj = value.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut expected = vec![
            "kind",
            "topic",
            "records",
            "record_bytes",
            "acks",
            "rate_limit",
            "seconds",
            "mb_per_s",
            "records_per_s",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
        ];
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(obj["kind"], "produce");
        assert_eq!(obj["records"], 1000);
        assert_eq!(obj["acks"], "all");
        assert_eq!(obj["rate_limit"], 500);
        assert_eq!(obj["seconds"], 2.0);
        assert_eq!(obj["mb_per_s"], 0.512);
        assert_eq!(obj["records_per_s"], 500.0);
        // 5,000 µs median, 10,000 µs max (within the histogram's 3 significant digits).
        let p50 = obj["p50_ms"].as_f64().unwrap();
        assert!((p50 - 5.0).abs() < 0.01, "p50 {p50}");
        let max = obj["max_ms"].as_f64().unwrap();
        assert!((max - 10.0).abs() < 0.01, "max {max}");
        assert!(!report.json_line().contains('\n'));
    }

    #[test]
    fn consume_lines_have_nulls() {
        let report = BenchReport::new("consume", "t", 10, 100, 1000, 1.0, None, None, None);
        let value: serde_json::Value = serde_json::from_str(&report.json_line()).unwrap();
        assert_eq!(value["acks"], serde_json::Value::Null);
        assert_eq!(value["p99_ms"], serde_json::Value::Null);
        assert_eq!(value["mb_per_s"], 0.001);
        assert!(report.human().contains("MB = 1,000,000 bytes"));
        assert!(!report.human().contains("latency"));
    }

    #[test]
    fn empty_histogram_has_no_latency() {
        assert!(Latency::from_micros(&latency_histogram()).is_none());
    }
}
