//! One module per group of commands; `run` dispatches.

mod collection;
mod jobs;
mod registry_ops;
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
        Command::Export {
            name,
            reference,
            out,
        } => registry_ops::export(g, &name, &reference, &out).await,
        Command::Quantize(args) => train::quantize(g, &args).await,
        Command::Serve {
            manifest,
            components,
            listen,
            token,
        } => {
            let mut env: Vec<(String, String)> = token
                .map(|t| vec![("EXPOSR_API_TOKEN".to_owned(), t)])
                .unwrap_or_default();
            let registry = if g.registry.starts_with("s3://") {
                // The components reach S3 themselves, through the host's outbound HTTP, with
                // the same URL and AWS_* settings as this process.
                env.push(("EXPOSR_REGISTRY".to_owned(), g.registry.clone()));
                env.extend(std::env::vars().filter(|(k, _)| k.starts_with("AWS_")));
                None
            } else {
                anyhow::ensure!(
                    !g.registry.contains("://") || g.registry.starts_with("file://"),
                    "serve needs a local registry directory or an s3:// URL, not {}",
                    g.registry
                );
                Some(std::path::PathBuf::from(
                    g.registry.strip_prefix("file://").unwrap_or(&g.registry),
                ))
            };
            let opts = crate::serve::Options {
                manifest,
                components,
                registry,
                listen,
                env,
            };
            crate::serve::serve(opts, |addr| {
                println!("listening on http://{addr}");
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            })
            .await
        }
        Command::Compose { socket, plugs, out } => {
            crate::serve::compose::compose_files(&socket, &plugs, &out)?;
            println!("{}", out.display());
            Ok(())
        }
        Command::Validate {
            manifest,
            artifacts,
        } => registry_ops::validate(g, &manifest, &artifacts).await,
        Command::Models => registry_ops::models(g).await,
        Command::Versions { name } => registry_ops::versions(g, &name).await,
        Command::Show {
            name,
            reference,
            format,
        } => registry_ops::show(g, &name, &reference, format).await,
        Command::Promote {
            name,
            version,
            alias,
        } => registry_ops::promote(g, &name, &version, &alias).await,
        Command::Verify { name, reference } => registry_ops::verify(g, &name, &reference).await,
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
                collection::ingest_images(
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
        } => collection::classify(g, &inputs, &model, &reference, int8).await,
        Command::Scrape {
            source,
            limit,
            sources,
        } => collection::scrape(g, source.as_deref(), limit, &sources).await,
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
        } => registry_ops::gc(g, dry_run, keep_last, grace).await,
        Command::Publish {
            manifest,
            artifacts,
            version,
        } => registry_ops::publish(g, &manifest, &artifacts, version.as_deref()).await,
    }?;
    Ok(ExitCode::SUCCESS)
}
