//! Publishing a checked model: the gate's decision ([`gate`]), the manifest built once
//! ([`manifest`]), the registry write that publishes and promotes in one index update, and,
//! from the manifest as published, the run record and history ([`record`]) and the local run
//! folder ([`run_folder`]).

pub mod gate;
pub mod manifest;
pub mod record;
pub mod run_folder;

use anyhow::Context;
use bytes::Bytes;
use registry::manifest::GateDecision;
use registry::{Alias, Manifest, Promotion, Published, Registry, VersionChoice};

use crate::job::TrainJob;
use crate::train::Outcome;
use gate::Candidate;

/// How often a run decides again when production moved under it before giving up.
const MAX_REGATES: usize = 3;

/// Decides the gate, then publishes the next version, promoting it in the same index write,
/// conditional on production still being the version the gate compared with; if another run
/// moved it meanwhile, scores the new production and decides again. `manifest_for` builds the
/// manifest for a decision. The fence is checked right before each write.
pub async fn gate_and_publish(
    reg: &Registry,
    job: &TrainJob,
    outcome: &Outcome,
    candidate: Candidate,
    blobs: &[Bytes],
    manifest_for: impl Fn(&GateDecision) -> anyhow::Result<Manifest>,
) -> anyhow::Result<(Published, GateDecision)> {
    let mut regated = 0;
    loop {
        let production =
            gate::production_score(reg, &job.name, &job.data, outcome, job.force).await?;
        let decision = gate::decide(&job.config, job.force, candidate, production);
        let manifest = manifest_for(&decision)?;
        if let Some(fence) = &job.fence {
            fence
                .check()
                .await
                .context("checking the job's lease before publishing")?;
        }
        let result = match decision.promoted {
            true => {
                let promotion = Promotion {
                    alias: Alias::production(),
                    expected: decision.baseline.clone(),
                };
                reg.publish_promoted(manifest, blobs, VersionChoice::Next, promotion)
                    .await
            }
            false => reg.publish(manifest, blobs, VersionChoice::Next).await,
        };
        match result {
            Err(e @ registry::Error::AliasMoved { .. }) if regated < MAX_REGATES => {
                regated += 1;
                tracing::warn!("{e}; deciding again");
            }
            other => {
                let published = other.with_context(|| format!("publishing {}", job.name))?;
                return Ok((published, decision));
            }
        }
    }
}
