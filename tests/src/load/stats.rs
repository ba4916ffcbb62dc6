//! What a phase measured: an HDR histogram of latencies per operation (microseconds, 3 significant
//! digits, 1 µs to 60 s), errors by gRPC code and reason, saga retries, and for open-loop runs how
//! late requests started against their schedule. Workers record into shared per-operation
//! histograms behind uncontended mutexes (a record is a few nanoseconds; a request is hundreds of
//! microseconds), so memory stays one histogram per operation whatever the concurrency.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::ops::{Op, Outcome};

/// Highest latency recorded exactly; longer ones are recorded as this.
const MAX_MICROS: u64 = 60_000_000;

#[allow(clippy::expect_used, reason = "constant bounds within hdrhistogram's limits cannot fail")]
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked mid-record leaves a histogram that is still consistent.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct OpRecord {
    latency: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<(String, String), u64>>,
    error_count: AtomicU64,
    retries: AtomicU64,
}

/// The measurements of one phase.
pub struct Recorder {
    ops: Vec<OpRecord>,
    /// Open loop: how late each request started against its intended time.
    start_lag: Mutex<Histogram<u64>>,
    done: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            ops: (0..Op::COUNT)
                .map(|_| OpRecord {
                    latency: Mutex::new(histogram()),
                    errors: Mutex::new(BTreeMap::new()),
                    error_count: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                })
                .collect(),
            start_lag: Mutex::new(histogram()),
            done: AtomicU64::new(0),
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS)
}

impl Recorder {
    /// Records one finished request: its latency if it succeeded, its code and reason if not.
    pub fn record(&self, op: Op, latency: Duration, outcome: Outcome) {
        let record = &self.ops[op.index()];
        if outcome.retries > 0 {
            record.retries.fetch_add(u64::from(outcome.retries), Ordering::Relaxed);
        }
        match outcome.result {
            Ok(()) => {
                let _ = lock(&record.latency).record(micros(latency));
            }
            Err(status) => {
                record.error_count.fetch_add(1, Ordering::Relaxed);
                let key = (format!("{:?}", status.code()), settle_testkit::reason(&status));
                *lock(&record.errors).entry(key).or_default() += 1;
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_start_lag(&self, lag: Duration) {
        let _ = lock(&self.start_lag).record(micros(lag));
    }

    /// Requests finished so far (for the progress bar).
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The summary of every operation that ran, over `elapsed` seconds of timed run.
    pub fn summarize(&self, elapsed: Duration) -> Vec<OpSummary> {
        Op::all()
            .filter_map(|op| {
                let record = &self.ops[op.index()];
                let latency = lock(&record.latency);
                let errors = lock(&record.errors);
                let error_count = record.error_count.load(Ordering::Relaxed);
                if latency.is_empty() && error_count == 0 {
                    return None;
                }
                let errors = errors
                    .iter()
                    .map(|((code, reason), count)| ErrorCount {
                        code: code.clone(),
                        reason: reason.clone(),
                        count: *count,
                    })
                    .collect();
                Some(OpSummary::of(
                    op,
                    &latency,
                    error_count,
                    record.retries.load(Ordering::Relaxed),
                    errors,
                    elapsed,
                ))
            })
            .collect()
    }

    /// The start-lag summary, when any was recorded (open loop).
    pub fn start_lag(&self) -> Option<Percentiles> {
        let lag = lock(&self.start_lag);
        (!lag.is_empty()).then(|| Percentiles::of(&lag))
    }

    /// The latency spectrum of `op` for plots.
    pub fn spectrum(&self, op: Op) -> Vec<(f64, u64)> {
        spectrum(&lock(&self.ops[op.index()].latency))
    }
}

/// Percentiles plotted (the HDR "percentile spectrum"): x = 1/(1-p) on a log axis.
pub const SPECTRUM: &[f64] = &[0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0];

fn spectrum(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    SPECTRUM.iter().map(|p| (*p, histogram.value_at_percentile(*p))).collect()
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Percentiles {
        Percentiles {
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// Failed requests of one gRPC code and `ErrorInfo.reason`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorCount {
    pub code: String,
    pub reason: String,
    pub count: u64,
}

/// One operation's figures in one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpSummary {
    pub op: Op,
    /// Successful requests (the latency figures are theirs).
    pub ok: u64,
    pub errors: u64,
    pub retries: u64,
    /// Successful requests per second of timed run.
    pub throughput: f64,
    pub latency: Percentiles,
    pub errors_by_reason: Vec<ErrorCount>,
}

impl OpSummary {
    pub fn of(
        op: Op,
        latency: &Histogram<u64>,
        errors: u64,
        retries: u64,
        errors_by_reason: Vec<ErrorCount>,
        elapsed: Duration,
    ) -> OpSummary {
        let ok = latency.len();
        let seconds = elapsed.as_secs_f64();
        OpSummary {
            op,
            ok,
            errors,
            retries,
            throughput: if seconds > 0.0 { ok as f64 / seconds } else { 0.0 },
            latency: Percentiles::of(latency),
            errors_by_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    fn ok() -> Outcome {
        Outcome { result: Ok(()), retries: 0 }
    }

    #[test]
    fn summarizes_percentiles_and_throughput() {
        let recorder = Recorder::default();
        // 1..=1000 ms: p50 500 ms, p90 900 ms, p99 990 ms, max 1000 ms.
        for ms in 1..=1000u64 {
            recorder.record(Op::Attach, Duration::from_millis(ms), ok());
        }
        let summary = recorder.summarize(Duration::from_secs(4));
        assert_eq!(summary.len(), 1);
        let attach = &summary[0];
        assert_eq!((attach.op, attach.ok, attach.errors), (Op::Attach, 1000, 0));
        assert!((attach.throughput - 250.0).abs() < 1e-9);
        let close = |value: u64, expected: u64| value.abs_diff(expected) <= expected / 500;
        assert!(close(attach.latency.p50_us, 500_000), "{:?}", attach.latency);
        assert!(close(attach.latency.p90_us, 900_000));
        assert!(close(attach.latency.p99_us, 990_000));
        assert!(close(attach.latency.max_us, 1_000_000));
        assert!((attach.latency.mean_us - 500_500.0).abs() < 1_000.0);
    }

    #[test]
    fn counts_errors_by_code_and_reason_apart_from_latencies() {
        let recorder = Recorder::default();
        recorder.record(Op::Read, Duration::from_millis(2), ok());
        for _ in 0..3 {
            let failed = Outcome { result: Err(Status::unavailable("down")), retries: 2 };
            recorder.record(Op::Read, Duration::from_secs(9), failed);
        }
        let read = &recorder.summarize(Duration::from_secs(1))[0];
        assert_eq!((read.ok, read.errors, read.retries), (1, 3, 6));
        assert_eq!(
            read.errors_by_reason,
            vec![ErrorCount { code: "Unavailable".into(), reason: String::new(), count: 3 }]
        );
        assert!(read.latency.max_us < 3_000, "failed requests stay out of the latencies");
        assert_eq!(recorder.done(), 4);
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let recorder = Recorder::default();
        recorder.record(Op::Noop, Duration::from_nanos(10), ok());
        recorder.record(Op::Noop, Duration::from_secs(600), ok());
        let noop = &recorder.summarize(Duration::from_secs(1))[0];
        assert_eq!(noop.ok, 2);
        assert!(noop.latency.max_us >= MAX_MICROS);
    }

    #[test]
    fn operations_that_did_not_run_are_left_out() {
        let recorder = Recorder::default();
        assert!(recorder.summarize(Duration::from_secs(1)).is_empty());
        assert!(recorder.start_lag().is_none());
        assert!(recorder.spectrum(Op::Read).is_empty());
    }

    #[test]
    fn the_spectrum_is_ordered() {
        let recorder = Recorder::default();
        for us in [100, 200, 300, 5_000] {
            recorder.record(Op::List, Duration::from_micros(us), ok());
        }
        let spectrum = recorder.spectrum(Op::List);
        assert_eq!(spectrum.len(), SPECTRUM.len());
        assert!(spectrum.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }
}
