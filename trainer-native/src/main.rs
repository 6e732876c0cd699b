//! `exposr-trainer`: the operator CLI. Thin: parse, run one command, print the error chain, exit.

mod cli;
mod collect;
mod commands;
mod dataset;
mod export;
mod features;
mod output;
mod pipeline;
mod registry_opts;
mod serve;
mod train;
mod validator;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(&cli.global);
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => output::report_error(&err, json),
    }
}
