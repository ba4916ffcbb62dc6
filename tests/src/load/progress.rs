//! Progress bars on stderr (hidden when stderr is not a terminal, as in CI). The timed loop never
//! touches a bar: a ticker copies the recorder's counter into it ten times a second.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::stats::Recorder;

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A bar of `len` steps, labelled `prefix`.
pub fn bar(len: u64, prefix: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        style("{prefix:>28} [{bar:32}] {pos}/{len} {msg} ({elapsed}, eta {eta})").progress_chars("=> "),
    );
    bar.set_prefix(prefix.into());
    bar
}

/// Follows `recorder` into `bar` until the returned guard is dropped.
pub fn follow(bar: ProgressBar, recorder: Arc<Recorder>) -> Follow {
    let ticker = bar.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let done = recorder.done();
            ticker.set_position(done);
            let elapsed = ticker.elapsed().as_secs_f64();
            if elapsed > 0.0 {
                ticker.set_message(format!("{:.0}/s", done as f64 / elapsed));
            }
        }
    });
    Follow { bar, task }
}

/// Stops the ticker and clears the bar.
pub struct Follow {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
