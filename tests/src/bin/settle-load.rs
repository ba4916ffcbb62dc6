//! `settle-load`: load-tests the three settle services and measures this machine's ceilings in the
//! same run (see docs/benchmarks.md and `settle-load --help`). Exits 0 when every request
//! succeeded, 1 when some failed, 2 when the run could not be carried out. Figures never decide the
//! exit code.

use std::process::ExitCode;

use settle_tests::load::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("settle-load: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(settle_tests::load::run(args)) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("settle-load: {error:#}");
            ExitCode::from(2)
        }
    }
}
