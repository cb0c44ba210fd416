//! `chitty-chat`: see `chitty-chat --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = chitty_chat::cli::Cli::parse();
    match chitty_chat::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chitty-chat: {error:#}");
            ExitCode::FAILURE
        }
    }
}
