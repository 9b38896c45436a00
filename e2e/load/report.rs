//! What a run prints: progress lines on stderr, the summary on stdout, durations and rates.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::version::Info;

use crate::memory::{METRIC, MetricsUrl, PeakMemory};

/// Certificates per second. A run cannot really take no time; the floor keeps the division
/// finite if the clock says it did.
pub fn rate_per_second(count: u32, elapsed: Duration) -> f64 {
    f64::from(count) / elapsed.as_secs_f64().max(1e-3)
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// `1000 Certificates Ready in 8.41 s: 118.9 certs/s; controller peak memory 41.2 MiB
/// (process_resident_memory_bytes, 2 pods)`. `url` is `--metrics-url` when memory came from
/// there rather than from pods.
pub fn summary_line(count: u32, elapsed: Duration, memory: &PeakMemory, url: Option<&MetricsUrl>) -> String {
    format!(
        "{} Ready in {:.2} s: {:.1} certs/s; {}",
        counted(u64::from(count), "Certificate"),
        elapsed.as_secs_f64(),
        rate_per_second(count, elapsed),
        memory_phrase(memory, url)
    )
}

/// `API server ceiling: the writes of 1000 issuances (create, Secret, status, Event) in 13.2 s:
/// 75.6 certs/s`.
pub fn ceiling_line(count: u32, elapsed: Duration) -> String {
    format!(
        "API server ceiling: the writes of {} (create, Secret, status, Event) in {:.2} s: {:.1} certs/s",
        counted(u64::from(count), "issuance"),
        elapsed.as_secs_f64(),
        rate_per_second(count, elapsed),
    )
}

fn memory_phrase(memory: &PeakMemory, url: Option<&MetricsUrl>) -> String {
    match memory.peak_bytes() {
        Some(bytes) => {
            let from = match url {
                Some(url) => url.to_string(),
                None => counted(memory.sampled() as u64, "pod"),
            };
            format!("controller peak memory {:.1} MiB ({METRIC}, {from})", mib(bytes))
        }
        // No number rather than a made-up one.
        None => format!(
            "controller peak memory not measured (no {METRIC} sample: {})",
            memory.last_error().unwrap_or("no scrape finished")
        ),
    }
}

/// `certkeeper-load: 4.0 s: created 640/1000, Ready 512/1000, controller peak memory 38.1 MiB`
pub fn progress_line(
    elapsed: Duration,
    created: u32,
    ready: usize,
    count: u32,
    peak_bytes: Option<f64>,
) -> String {
    let memory = peak_bytes.map_or(String::new(), |bytes| {
        format!(", controller peak memory {:.1} MiB", mib(bytes))
    });
    format!(
        "certkeeper-load: {:.1} s: created {created}/{count}, Ready {ready}/{count}{memory}",
        elapsed.as_secs_f64()
    )
}

/// The `q` quantile (0..=1) of sorted `samples`, nearest rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `create → Ready, one at a time: p50 14.2 ms, p90 18.9 ms, p99 31.0 ms, max 40.1 ms (100 Certificates)`
pub fn latency_line(latencies: &[Duration]) -> String {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "create → Ready, one at a time: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({})",
        ms(quantile(&sorted, 0.5)),
        ms(quantile(&sorted, 0.9)),
        ms(quantile(&sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default()),
        counted(sorted.len() as u64, "Certificate"),
    )
}

/// `Kubernetes v1.33.1 (linux/amd64)`
pub fn server_version(info: &Info) -> String {
    if info.platform.is_empty() {
        format!("Kubernetes {}", info.git_version)
    } else {
        format!("Kubernetes {} ({})", info.git_version, info.platform)
    }
}

/// A duration as a Go duration a user would type: `10m`, `1h30m`, `45s`, `2.5s`.
pub fn duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

/// Collapses a message onto one line: error texts from the API server can hold newlines.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `1 pod`, `2 pods`.
fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peak_of(samples: &[(&str, f64)]) -> PeakMemory {
        let mut peak = PeakMemory::default();
        for (target, bytes) in samples {
            peak.record(target, Ok(*bytes));
        }
        peak
    }

    #[test]
    fn the_summary_gives_time_rate_and_peak_memory_over_pods() {
        let memory = peak_of(&[
            ("pod a", 40.0 * 1048576.0),
            ("pod b", 43_205_018.0),
            ("pod a", 1.0),
        ]);
        assert_eq!(
            summary_line(1000, Duration::from_millis(8410), &memory, None),
            "1000 Certificates Ready in 8.41 s: 118.9 certs/s; controller peak memory 41.2 MiB \
             (process_resident_memory_bytes, 2 pods)"
        );
    }

    #[test]
    fn the_ceiling_line_names_the_writes_and_the_rate() {
        assert_eq!(
            ceiling_line(1000, Duration::from_millis(13_230)),
            "API server ceiling: the writes of 1000 issuances (create, Secret, status, Event) in \
             13.23 s: 75.6 certs/s"
        );
    }

    #[test]
    fn a_metrics_url_is_named_in_the_summary() {
        let url = MetricsUrl::parse("http://127.0.0.1:9402/metrics").unwrap();
        let memory = peak_of(&[("url", 20.0 * 1048576.0)]);
        assert_eq!(
            summary_line(1, Duration::from_secs(2), &memory, Some(&url)),
            "1 Certificate Ready in 2.00 s: 0.5 certs/s; controller peak memory 20.0 MiB \
             (process_resident_memory_bytes, http://127.0.0.1:9402/metrics)"
        );
    }

    #[test]
    fn without_a_sample_the_summary_says_why_instead_of_a_number() {
        let mut memory = PeakMemory::default();
        memory.record("pod a", Err("HTTP 403 Forbidden".into()));
        let line = summary_line(10, Duration::from_secs(1), &memory, None);
        assert!(
            line.ends_with(
                "controller peak memory not measured (no process_resident_memory_bytes sample: pod a: HTTP 403 Forbidden)"
            ),
            "{line}"
        );
        assert!(!line.contains("MiB"));
        assert!(
            summary_line(10, Duration::from_secs(1), &PeakMemory::default(), None)
                .ends_with("no scrape finished)")
        );
    }

    #[test]
    fn rates_divide_count_by_seconds() {
        assert_eq!(rate_per_second(1000, Duration::from_secs(10)), 100.0);
        assert_eq!(rate_per_second(300, Duration::from_millis(1500)), 200.0);
        assert!(rate_per_second(5, Duration::ZERO).is_finite());
        assert_eq!(mib(1048576.0 * 1.5), 1.5);
    }

    #[test]
    fn progress_lines_count_created_and_ready() {
        assert_eq!(
            progress_line(
                Duration::from_millis(4020),
                640,
                512,
                1000,
                Some(38.1 * 1048576.0)
            ),
            "certkeeper-load: 4.0 s: created 640/1000, Ready 512/1000, controller peak memory 38.1 MiB"
        );
        assert_eq!(
            progress_line(Duration::from_secs(2), 32, 0, 1000, None),
            "certkeeper-load: 2.0 s: created 32/1000, Ready 0/1000"
        );
    }

    #[test]
    fn durations_read_as_go_durations() {
        assert_eq!(duration(Duration::from_secs(600)), "10m");
        assert_eq!(duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(duration(Duration::from_secs(3605)), "1h5s");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn the_server_version_names_release_and_platform() {
        let info = Info {
            git_version: "v1.33.1".into(),
            platform: "linux/amd64".into(),
            ..Info::default()
        };
        assert_eq!(server_version(&info), "Kubernetes v1.33.1 (linux/amd64)");
    }

    #[test]
    fn latencies_are_reported_as_nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(
            latency_line(&samples),
            "create → Ready, one at a time: p50 50.0 ms, p90 90.0 ms, p99 99.0 ms, max 100.0 ms \
             (100 Certificates)"
        );
        assert_eq!(
            latency_line(&[Duration::from_micros(14_250)]),
            "create → Ready, one at a time: p50 14.2 ms, p90 14.2 ms, p99 14.2 ms, max 14.2 ms \
             (1 Certificate)"
        );
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(one_line("a\n  b\r\nc "), "a b c");
    }
}
