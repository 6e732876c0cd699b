//! Workers as separate processes over the real S3 server (moto, started by scripts/test): racing
//! claims, a killed worker's job taken over after its lease, ten workers and one scheduled scrape,
//! and a failing job retried, then failed with its error at `GET /jobs/{id}`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{SendJson, TOKEN, data, ok, s3_env, start, trainer};
use registry::Registry;
use registry::jobs::{Job, JobKind, JobState};
use registry::runs::RunKind;
use serde_json::Value;

/// A fresh registry prefix in the moto bucket, with its AWS settings.
fn s3_registry(label: &str) -> Option<(String, Vec<(String, String)>)> {
    let env = s3_env()?;
    let bucket = std::env::var("EXPOSR_TEST_S3_BUCKET").unwrap();
    let url = format!("s3://{bucket}/{label}-{}", uuid::Uuid::new_v4().simple());
    Some((url, env))
}

fn open(url: &str, env: &[(String, String)]) -> Registry {
    Registry::read_only(registry::store::open(url, env).unwrap())
}

/// A sources config collecting iris.
fn sources(dir: &Path) -> PathBuf {
    let path = dir.join("sources.yaml");
    let text = format!(
        "datasets:\n  - name: iris\n    csv: {}\n    schema: {}\n",
        data("iris.csv").display(),
        data("iris.schema.json").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn worker(url: &str, env: &[(String, String)], dir: &Path, id: &str, args: &[&str]) -> Child {
    trainer(url, env)
        .args(["--json", "worker", "--id", id, "--sources"])
        .arg(sources(dir))
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The ids of the jobs a worker's `--json` summary says it finished.
fn finished(out: &Output) -> Vec<String> {
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    summary["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

fn ingest_iris(url: &str, env: &[(String, String)]) {
    ok(trainer(url, env)
        .args(["ingest", "--dataset", "iris", "--csv"])
        .arg(data("iris.csv"))
        .arg("--schema")
        .arg(data("iris.schema.json"))
        .output()
        .unwrap());
}

/// A child process that is killed and reaped however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn all_jobs(reg: &Registry) -> Vec<Job> {
    let mut jobs = Vec::new();
    for id in reg.jobs().await.unwrap() {
        jobs.push(reg.job(&id).await.unwrap().unwrap());
    }
    jobs
}

/// Worker attempt records (`runs/<kind>_…/job.json`) in the registry.
async fn run_records(reg: &Registry) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in [JobKind::Scrape, JobKind::Train] {
        for run in reg.runs(RunKind::Job(kind)).await.unwrap() {
            if let Some(bytes) = reg.run_record(&run, "job.json").await.unwrap() {
                out.push(serde_json::from_slice(&bytes).unwrap());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn four_workers_run_fifty_queued_jobs_each_exactly_once() {
    let Some((url, env)) = s3_registry("race") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut queued = BTreeSet::new();
    for _ in 0..50 {
        let out = ok(trainer(&url, &env)
            .args(["enqueue", "scrape"])
            .output()
            .unwrap());
        queued.insert(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }
    assert_eq!(queued.len(), 50);
    let workers: Vec<Child> = (0..4)
        .map(|i| {
            worker(
                &url,
                &env,
                dir.path(),
                &format!("w{i}"),
                &["--once", "--no-schedule"],
            )
        })
        .collect();
    let mut ran = Vec::new();
    for w in workers {
        ran.extend(finished(&ok(w.wait_with_output().unwrap())));
    }
    assert_eq!(ran.len(), 50, "jobs run, counting repeats: {ran:?}");
    assert_eq!(ran.iter().cloned().collect::<BTreeSet<_>>(), queued);

    let reg = open(&url, &env);
    let jobs = all_jobs(&reg).await;
    assert_eq!(jobs.len(), 50);
    for job in &jobs {
        assert_eq!(job.attempts, 1, "{job:?}");
        assert!(matches!(job.state, JobState::Done { .. }), "{job:?}");
    }
    let records = run_records(&reg).await;
    let recorded: BTreeSet<String> = records
        .iter()
        .map(|r| r["job"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(records.len(), 50, "one attempt record per job");
    assert_eq!(recorded, queued);
    // Every scrape saw the same content: one digest (scrapes racing at the start may each have
    // written a snapshot of it; later ones found it unchanged).
    let digests: BTreeSet<&str> = records
        .iter()
        .map(|r| r["result"]["datasets"][0]["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 1);
    let unchanged = records
        .iter()
        .filter(|r| r["result"]["datasets"][0]["created"] == false)
        .count();
    assert!(
        unchanged >= 40,
        "{unchanged} of 50 found the snapshot unchanged"
    );
    assert!(reg.pending_jobs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_job_is_taken_over_after_its_lease_and_completed() {
    let Some((url, env)) = s3_registry("kill") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    ingest_iris(&url, &env);
    // Long enough (about 10 s in a debug build) to be killed in the middle.
    let config = r#"{"training":{"epochs":1200,"patience":1200}}"#;
    let out = ok(trainer(&url, &env)
        .args(["enqueue", "train", "--param", "dataset=iris"])
        .arg(format!("--param=config={config}"))
        .output()
        .unwrap());
    let id: uuid::Uuid = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let reg = open(&url, &env);

    let mut first = KillOnDrop(worker(
        &url,
        &env,
        dir.path(),
        "doomed",
        &["--once", "--no-schedule", "--lease", "2s"],
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let lease_at_kill = loop {
        let job = reg.job(&id).await.unwrap().unwrap();
        if let JobState::Running {
            owner,
            lease_expires,
            ..
        } = &job.state
        {
            assert_eq!(owner, "doomed");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            first.0.kill().unwrap(); // SIGKILL: no chance to hand the job back
            first.0.wait().unwrap();
            let job = reg.job(&id).await.unwrap().unwrap();
            let JobState::Running {
                lease_expires: renewed,
                ..
            } = job.state
            else {
                panic!("the job finished before the kill: {job:?}");
            };
            assert!(
                renewed > *lease_expires,
                "the lease was renewed while it ran"
            );
            break renewed;
        }
        assert!(Instant::now() < deadline, "the first worker never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let second = worker(
        &url,
        &env,
        dir.path(),
        "heir",
        &[
            "--no-schedule",
            "--max-jobs",
            "1",
            "--poll-interval",
            "200ms",
        ],
    );
    let out = ok(second.wait_with_output().unwrap());
    assert_eq!(finished(&out), vec![id.to_string()]);

    let job = reg.job(&id).await.unwrap().unwrap();
    assert!(matches!(job.state, JobState::Done { .. }), "{job:?}");
    assert_eq!(job.attempts, 2, "the killed attempt counts");
    let records = run_records(&reg).await;
    assert_eq!(records.len(), 1, "the killed worker wrote no record");
    let heir = &records[0];
    assert_eq!(heir["owner"], "heir");
    assert_eq!(heir["attempt"], 2);
    assert_eq!(heir["outcome"], "done");
    let started: chrono::DateTime<chrono::Utc> =
        heir["started_at"].as_str().unwrap().parse().unwrap();
    assert!(
        started >= lease_at_kill,
        "taken over at {started}, before the lease ran out at {lease_at_kill}"
    );
    let history = reg
        .history(&registry::ModelName::new("iris").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].job, Some(id));
    assert_eq!(history[0].version.as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_workers_starting_together_enqueue_one_scheduled_scrape() {
    let Some((url, env)) = s3_registry("schedule") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    ingest_iris(&url, &env);
    let workers: Vec<Child> = (0..10)
        .map(|i| worker(&url, &env, dir.path(), &format!("s{i}"), &["--once"]))
        .collect();
    let mut enqueued = Vec::new();
    let mut ran = Vec::new();
    for w in workers {
        let out = ok(w.wait_with_output().unwrap());
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        enqueued.extend(
            summary["enqueued"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
        ran.extend(finished(&out));
    }
    let reg = open(&url, &env);
    let jobs = all_jobs(&reg).await;
    let by_kind: BTreeMap<&str, Vec<&Job>> = jobs.iter().fold(BTreeMap::new(), |mut m, j| {
        m.entry(j.kind.as_str()).or_insert_with(Vec::new).push(j);
        m
    });
    assert_eq!(by_kind["scrape"].len(), 1, "one scheduled scrape: {jobs:?}");
    assert_eq!(by_kind["train"].len(), 1, "one scheduled training run");
    assert_eq!(enqueued.len(), 2, "enqueued once each: {enqueued:?}");
    assert_eq!(ran.len(), 2, "each run once: {ran:?}");
    for job in &jobs {
        assert_eq!(job.requested_by, "schedule");
        assert_eq!(job.attempts, 1);
        assert!(matches!(job.state, JobState::Done { .. }), "{job:?}");
    }
    let schedule = reg.schedule().await.unwrap().expect("kept in the registry");
    assert_eq!(schedule.entries.len(), 2);
    assert_eq!(schedule.entries[0].every_seconds, 12 * 3600);
    assert_eq!(schedule.entries[1].every_seconds, 7 * 86400);

    // A second round in the same period finds nothing due.
    let out = ok(worker(&url, &env, dir.path(), "later", &["--once"])
        .wait_with_output()
        .unwrap());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["enqueued"], serde_json::json!([]));
    assert_eq!(summary["jobs"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_job_is_retried_then_failed_with_its_error_at_get_jobs_id() {
    let Some(server) = start() else {
        return;
    };
    let http = reqwest::Client::new();
    let queued = http
        .post(format!("{}/train", server.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&serde_json::json!({ "dataset": "nope" }))
        .send_json()
        .await;
    let id = queued["id"].as_str().unwrap().to_owned();
    let registry = server.dir.path().join("registry");
    let out = ok(trainer(registry.to_str().unwrap(), &[])
        .args([
            "--json",
            "worker",
            "--once",
            "--no-schedule",
            "--max-attempts",
            "3",
            "--retry-after",
            "0s",
            "--runs-dir",
        ])
        .arg(server.dir.path().join("runs"))
        .output()
        .unwrap());
    assert_eq!(finished(&out), vec![id.clone(); 3], "three attempts");
    let job = http
        .get(format!("{}/jobs/{id}", server.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send_json()
        .await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 3);
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with("failed after 3 attempts:")
            && error.contains("dataset nope has no snapshot"),
        "{error}"
    );
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send_json()
        .await;
    assert_eq!(metrics["jobs_pending"], 0);
    let iris = metrics["history"]["iris"].as_array().unwrap();
    assert_eq!(iris.len(), 1, "the served registry's own training run");
    assert_eq!(iris[0]["decision"], "promoted");
}
