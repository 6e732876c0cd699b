//! `exposr-trainer`: the operator CLI. Thin: parse, run one command, print the error chain, exit.

// The pipeline's steps, in the order data flows through them:
// collect -> dataset -> features -> train -> export -> validate -> publish.
mod collect;
mod dataset;
mod export;
mod features;
mod publish;
mod train;
mod validate;

// One train job through the steps, and what runs it.
mod job;
mod pipeline;
mod worker;

// Around the pipeline: classification, the embedded host, the CLI.
mod cli;
mod commands;
mod infer;
mod output;
mod registry_opts;
mod serve;

#[cfg(test)]
mod fuzz;

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
