//! Checks the logs in a directory (or one file) and prints the report:
//! `cargo run -p chitty-check --example check -- demo-logs`. The exit status is 0 when the history has no
//! violation, 1 when it has, and 2 when the logs cannot be read.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: check DIR_OR_FILE");
        return ExitCode::from(2);
    };
    let run = match chitty_logs::read_dir(&path) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let report = chitty_check::check(&run);
    print!("{report}");
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
