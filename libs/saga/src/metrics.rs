//! The saga driver's metrics: every step's outcome and duration, how sagas end, and the backlog
//! of sagas that are due but not being driven (the "stuck" gauge an alert watches).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, ObservableGauge};
use settle_platform::metrics::meter;

struct Instruments {
    steps: Histogram<f64>,
    finished: Counter<u64>,
    _backlog: ObservableGauge<i64>,
    _backlog_age: ObservableGauge<f64>,
}

/// Per saga kind: (sagas due and undriven, when the oldest became due in ms).
type Backlog = Mutex<HashMap<String, (i64, Option<i64>)>>;

static BACKLOG: OnceLock<Backlog> = OnceLock::new();

fn backlog() -> &'static Backlog {
    BACKLOG.get_or_init(Mutex::default)
}

fn instruments() -> &'static Instruments {
    static I: OnceLock<Instruments> = OnceLock::new();
    I.get_or_init(|| Instruments {
        steps: meter()
            .f64_histogram("settle.saga.step.duration")
            .with_unit("ms")
            .with_description(
                "Saga steps run, by kind, step and outcome (next, committed, finished, retry, fenced)",
            )
            .with_boundaries(vec![0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0])
            .build(),
        finished: meter()
            .u64_counter("settle.sagas.finished")
            .with_description("Sagas that ended, by kind and final state (succeeded, failed)")
            .build(),
        _backlog: meter()
            .i64_observable_gauge("settle.sagas.stuck")
            .with_description("Live sagas whose lease has expired or whose retry is due, not yet resumed")
            .with_callback(|observer| {
                let map = backlog().lock().unwrap_or_else(|p| p.into_inner());
                for (kind, (count, _)) in map.iter() {
                    observer.observe(*count, &[KeyValue::new("kind", kind.clone())]);
                }
            })
            .build(),
        _backlog_age: meter()
            .f64_observable_gauge("settle.sagas.stuck.age")
            .with_unit("s")
            .with_description("How long the oldest stuck saga has been due")
            .with_callback(|observer| {
                let now = crate::store::now_millis();
                let map = backlog().lock().unwrap_or_else(|p| p.into_inner());
                for (kind, (_, oldest)) in map.iter() {
                    let age = oldest.map_or(0.0, |due| (now - due).max(0) as f64 / 1000.0);
                    observer.observe(age, &[KeyValue::new("kind", kind.clone())]);
                }
            })
            .build(),
    })
}

/// Records one step of a `kind` saga.
pub(crate) fn step(kind: &'static str, step: &str, outcome: &'static str, millis: f64) {
    instruments().steps.record(
        millis,
        &[
            KeyValue::new("kind", kind),
            KeyValue::new("step", step.to_owned()),
            KeyValue::new("outcome", outcome),
        ],
    );
}

/// Records a saga that ended.
pub(crate) fn finished(kind: &'static str, state: &'static str) {
    instruments().finished.add(1, &[KeyValue::new("kind", kind), KeyValue::new("state", state)]);
}

/// Replaces the backlog figures of `kinds` (kinds without a row have none).
pub(crate) fn set_backlog(kinds: &[&'static str], rows: Vec<(String, i64, Option<i64>)>) {
    instruments();
    let mut map = backlog().lock().unwrap_or_else(|p| p.into_inner());
    for kind in kinds {
        map.insert((*kind).to_owned(), (0, None));
    }
    for (kind, count, oldest) in rows {
        map.insert(kind, (count, oldest));
    }
}
