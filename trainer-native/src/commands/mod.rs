//! One module per group of commands, each thin: options in, one library call, output out.
//! `run` dispatches.

mod collect;
mod infer;
mod jobs;
mod registry;
mod serve;
mod train;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the command and returns the exit code for a run that did not fail outright.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Train(args) => train::train(g, &args).await,
        Command::Evaluate(args) => train::evaluate(g, &args).await,
        Command::Lookup {
            modality,
            user_id,
            alias,
        } => train::lookup(g, modality, &user_id, &alias).await,
        Command::Download {
            name,
            reference,
            out,
        } => registry::download(g, &name, &reference, &out).await,
        Command::Quantize(args) => train::quantize(g, &args).await,
        Command::Serve {
            manifest,
            components,
            listen,
            token,
            admin_token,
            limits,
        } => {
            let tokens = serve::Tokens {
                api: token,
                admin: admin_token,
            };
            serve::serve(g, manifest, components, listen, tokens, limits.limits()).await
        }
        Command::Compose { socket, plugs, out } => serve::compose(&socket, &plugs, &out),
        Command::Validate {
            manifest,
            artifacts,
        } => registry::validate(g, &manifest, &artifacts).await,
        Command::Models => registry::models(g).await,
        Command::Versions { name } => registry::versions(g, &name).await,
        Command::Show {
            name,
            reference,
            format,
        } => registry::show(g, &name, &reference, format).await,
        Command::Promote {
            name,
            version,
            alias,
        } => registry::promote(g, &name, &version, &alias).await,
        Command::Verify { name, reference } => registry::verify(g, &name, &reference).await,
        Command::Worker(args) => jobs::worker(g, &args).await,
        Command::Ingest {
            dir,
            label,
            license,
            dataset,
            csv,
            schema,
            pending,
        } => match (dir, csv, schema) {
            (_, Some(csv), Some(schema)) => {
                jobs::ingest(g, dataset.as_deref().unwrap_or_default(), &csv, &schema).await
            }
            (dir, _, _) => {
                collect::ingest_images(
                    g,
                    dir.as_deref(),
                    label.as_deref(),
                    &license,
                    dataset.as_deref(),
                    pending,
                )
                .await
            }
        },
        Command::Classify {
            inputs,
            model,
            reference,
            int8,
        } => infer::classify(g, &inputs, &model, &reference, int8).await,
        Command::Scrape {
            source,
            limit,
            sources,
        } => collect::scrape(g, source.as_deref(), limit, &sources).await,
        Command::Enqueue { kind, params } => jobs::enqueue(g, kind, &params).await,
        Command::Jobs { id } => jobs::jobs(g, id).await,
        Command::Schedule {
            scrape_every,
            train_every,
            train_params,
        } => jobs::schedule(g, scrape_every, train_every, &train_params).await,
        Command::History { model, limit } => jobs::history(g, model.as_deref(), limit).await,
        Command::Gc {
            dry_run,
            keep_last,
            grace,
        } => registry::gc(g, dry_run, keep_last, grace).await,
        Command::Publish {
            manifest,
            artifacts,
            version,
        } => registry::publish(g, &manifest, &artifacts, version.as_deref()).await,
    }?;
    Ok(ExitCode::SUCCESS)
}
