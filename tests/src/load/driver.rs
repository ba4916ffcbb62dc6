//! Runs prepared inputs against the services, closed-loop (N workers, each starting its next request
//! when the last one ends) or open-loop (requests start on a schedule, whatever the server does,
//! and their latency counts from the intended start). Per request the loop does an atomic
//! increment, a clock read or two, the call and a histogram record: no allocation of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ops::{Clients, Input};
use super::schedule::{self, Arrivals};
use super::stats::Recorder;

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Load {
    /// `concurrency` requests in flight at all times.
    Closed { concurrency: usize },
    /// `rate` requests per second, at most `max_in_flight` at once (the rest wait and their wait
    /// counts in their latency).
    Open { rate: f64, arrivals: Arrivals, max_in_flight: usize },
}

impl Load {
    /// Requests in flight at most.
    pub fn width(&self) -> usize {
        match *self {
            Load::Closed { concurrency } => concurrency,
            Load::Open { max_in_flight, .. } => max_in_flight,
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Load::Closed { concurrency } => format!("closed loop, {concurrency} in flight"),
            Load::Open { rate, arrivals, max_in_flight } => {
                format!("open loop, {rate:.0}/s {arrivals:?} arrivals, ≤ {max_in_flight} in flight")
            }
        }
    }
}

/// How long the inputs took and how many ran.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub elapsed: Duration,
    pub executed: usize,
}

/// Runs `inputs` in order under `load`, recording into `recorder`; stops taking new inputs at
/// `stop_at`. `schedule_seed` seeds Poisson arrivals.
pub async fn drive(
    inputs: Arc<Vec<Input>>,
    load: Load,
    clients: &Clients,
    recorder: &Arc<Recorder>,
    stop_at: Option<Instant>,
    schedule_seed: &mut crate::rng::Rng,
) -> Timing {
    let next = Arc::new(AtomicUsize::new(0));
    let (workers, offsets) = match load {
        Load::Closed { concurrency } => (concurrency, None),
        Load::Open { rate, arrivals, max_in_flight } => {
            (max_in_flight, Some(Arc::new(schedule::offsets(rate, inputs.len(), arrivals, schedule_seed))))
        }
    };
    let done_before = recorder.done();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.min(inputs.len()).max(1) {
        let (inputs, next, recorder, offsets) =
            (inputs.clone(), next.clone(), recorder.clone(), offsets.clone());
        let mut clients = clients.clone();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(input) = inputs.get(i) else { break };
                // Closed loop: a request starts when it is taken. Open loop: at its intended time,
                // which may already be past if every worker was busy (then it waited in the queue).
                let intended = match &offsets {
                    None => Instant::now(),
                    Some(offsets) => start + Duration::from_nanos(offsets[i]),
                };
                if stop_at.is_some_and(|stop| intended >= stop) {
                    break;
                }
                if offsets.is_some() {
                    tokio::time::sleep_until(intended.into()).await;
                    recorder.record_start_lag(intended.elapsed());
                }
                let outcome = clients.execute(input).await;
                recorder.record(input.op(), intended.elapsed(), outcome);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    Timing { elapsed, executed: usize::try_from(recorder.done() - done_before).unwrap_or(usize::MAX) }
}
