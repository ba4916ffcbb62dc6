//! Named fault points, for crash and chaos tests. Off unless the crate is built with the `faults`
//! feature AND a plan is loaded: the `FAILPOINTS` environment variable of the `fail` crate, e.g.
//! `FAILPOINTS="invoices.attach.after_reserve=return(crash)"`. Actions:
//!
//! - `return(crash)` (or plain `return`): the process exits at once with status 137, as if
//!   SIGKILLed — no draining, no flushing, no commit of an open transaction;
//! - `return(error)`: nothing happens here; callers that support injected errors check
//!   [`error_at`] instead;
//! - `sleep(ms)`, `pause`, `panic`, with probabilities (`20%return(crash)`) and counts
//!   (`1*return(crash)`), as the `fail` crate defines them.
//!
//! Points are named `<service>.<step>.<phase>` (`invoices.attach.after_apply`).

/// Activates the plan in `FAILPOINTS` (call once at start-up; a no-op without the feature).
pub fn setup() {
    #[cfg(feature = "faults")]
    if let Ok(plan) = std::env::var("FAILPOINTS") {
        // `name=actions;name=actions`, the format `fail::FailScenario` reads (which is meant for
        // tests: it holds a global lock for its lifetime).
        for entry in plan.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some((name, actions)) => match fail::cfg(name.trim(), actions.trim()) {
                    Ok(()) => {
                        tracing::warn!(point = name.trim(), actions = actions.trim(), "fault point armed")
                    }
                    Err(error) => tracing::error!(%error, entry, "invalid fault point"),
                },
                None => tracing::error!(entry, "invalid fault point (expected name=actions)"),
            }
        }
    }
}

/// Passes fault point `name`: crashes the process when its action says so.
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(feature = "faults")]
    if let Some(action) = fail::eval(name, |arg| arg) {
        match action.as_deref() {
            None | Some("crash") => crash(name),
            Some(_) => {}
        }
    }
    #[cfg(not(feature = "faults"))]
    let _ = name;
}

/// Whether fault point `name` asks for an injected error (`return(error)`).
#[inline]
pub fn error_at(name: &'static str) -> bool {
    #[cfg(feature = "faults")]
    {
        matches!(fail::eval(name, |arg| arg), Some(Some(ref a)) if a == "error")
    }
    #[cfg(not(feature = "faults"))]
    {
        let _ = name;
        false
    }
}

#[cfg(feature = "faults")]
fn crash(name: &str) -> ! {
    eprintln!("fault point {name}: crashing");
    std::process::exit(137)
}
