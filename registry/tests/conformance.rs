//! The store conformance suite against every backend: in-memory, a temporary directory, the moto
//! S3 server (all checks) and Garage (ordinary operations and the conditional-write probe).
//!
//! The S3 servers are started by `scripts/test`, which exports their addresses as
//! `EXPOSR_TEST_<SERVER>_{ENDPOINT,BUCKET,ACCESS_KEY,SECRET_KEY,REGION}`. Without them the S3
//! tests say they were skipped, unless `EXPOSR_REQUIRE_S3=1` (set by the script) makes that a
//! failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use registry::conformance::{self, IgnoreConditions, StoreFactory};
use registry::store::{self, DirStore, ObjectStoreBackend, Store};

fn memory() -> impl StoreFactory {
    || Arc::new(ObjectStoreBackend::in_memory()) as Arc<dyn Store>
}

fn directory() -> impl StoreFactory {
    let root = tempfile::tempdir().expect("temp dir").keep();
    let next = AtomicUsize::new(0);
    move || {
        let n = next.fetch_add(1, Ordering::SeqCst);
        Arc::new(DirStore::new(root.join(n.to_string())).expect("dir store")) as Arc<dyn Store>
    }
}

/// A factory of fresh prefixes in the bucket of the S3 server `server`, if it is configured.
fn s3(server: &str) -> Option<impl StoreFactory> {
    s3_opened_by(server, store::open)
}

/// The same, through [`store::open_with_http`]: the caller's HTTP client and the pure-Rust
/// SigV4 signer that WebAssembly components use.
fn s3_rust_crypto(server: &str) -> Option<impl StoreFactory> {
    s3_opened_by(server, |url, options| {
        store::open_with_http(
            url,
            options,
            object_store::client::ReqwestConnector::default(),
        )
    })
}

type Opener = fn(&str, &[(String, String)]) -> Result<Arc<dyn Store>, store::OpenError>;

fn s3_opened_by(server: &str, open: Opener) -> Option<impl StoreFactory> {
    let var = |name: &str| std::env::var(format!("EXPOSR_TEST_{server}_{name}")).ok();
    let Some(endpoint) = var("ENDPOINT") else {
        assert!(
            std::env::var("EXPOSR_REQUIRE_S3").is_err(),
            "EXPOSR_TEST_{server}_ENDPOINT is not set; run the tests with scripts/test"
        );
        eprintln!("skipped: no {server} server (run scripts/test to start one)");
        return None;
    };
    let bucket = var("BUCKET").expect("bucket");
    let options = vec![
        ("aws_endpoint".to_owned(), endpoint),
        (
            "aws_access_key_id".to_owned(),
            var("ACCESS_KEY").expect("key"),
        ),
        (
            "aws_secret_access_key".to_owned(),
            var("SECRET_KEY").expect("secret"),
        ),
        (
            "aws_region".to_owned(),
            var("REGION").unwrap_or("us-east-1".into()),
        ),
    ];
    Some(move || {
        let url = format!(
            "s3://{bucket}/conformance-{}",
            uuid::Uuid::new_v4().simple()
        );
        open(&url, &options).expect("open s3 store")
    })
}

fn ignoring_memory() -> impl StoreFactory {
    || Arc::new(IgnoreConditions(Arc::new(ObjectStoreBackend::in_memory()))) as Arc<dyn Store>
}

/// One check of the suite as a test, skipped when its factory is `None`.
macro_rules! check {
    ($factory:expr, $name:ident $(, $arg:expr)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            if let Some(make) = $factory {
                conformance::$name(&make $(, $arg)*).await;
            }
        }
    };
}

/// The full suite, for stores that enforce conditional writes.
macro_rules! full_suite {
    ($backend:ident, $factory:expr) => {
        mod $backend {
            use super::*;

            check!($factory, basic_operations);
            check!($factory, single_writer_round_trip);
            check!($factory, conditional_writes_are_enforced);
            check!($factory, stale_index_writer_conflicts_then_retries);
            check!($factory, publish_is_invisible_until_index_cas_succeeds);
            check!($factory, concurrent_publishers_lose_nothing, 8, 20);
            check!($factory, tampered_blob_is_refused);
            check!($factory, a_fault_at_any_call_leaves_no_half_version);
            check!($factory, user_lookup_falls_back_to_the_default);
            check!($factory, concurrent_workers_claim_each_job_once, 8, 40);
            check!($factory, garbage_collection_frees_only_the_unreachable);
            check!(
                $factory,
                promote_reports_the_previous_version_after_a_lost_answer
            );
        }
    };
}

full_suite!(in_memory, Some(memory()));
full_suite!(temp_dir, Some(directory()));
full_suite!(moto_s3, s3("S3"));
full_suite!(moto_s3_rust_crypto, s3_rust_crypto("S3"));

mod garage_s3 {
    use super::*;

    check!(s3("GARAGE"), basic_operations);
    check!(s3("GARAGE"), single_writer_round_trip);
    check!(s3("GARAGE"), ignored_conditions_are_detected);
    check!(s3("GARAGE"), every_write_path_refuses_an_unsafe_store);
}

#[tokio::test]
async fn a_store_that_ignores_conditions_is_detected() {
    conformance::ignored_conditions_are_detected(&ignoring_memory()).await;
}

#[tokio::test]
async fn every_write_path_refuses_a_store_that_ignores_conditions() {
    conformance::every_write_path_refuses_an_unsafe_store(&ignoring_memory()).await;
}

/// The simulation's actors in real time on a real store, with writes applied and then reported
/// failed: 8 gated publishers x 20 versions, 4 workers over 50 jobs (one killed mid-run), 4
/// scrapers over one image set, garbage collection throughout; then the simulation's checks over
/// everything stored.
async fn actors_keep_their_promises(store: Arc<dyn Store>) {
    let opts = registry::sim::real::RealOptions::default();
    let report = registry::sim::real::run(store, &opts).await;
    eprintln!(
        "real-time run: {:.1} s, faults {:?}, jobs done {} failed {}, {} versions, {} collections",
        report.seconds,
        report.faults,
        report.done,
        report.failed,
        report.versions,
        report.collections
    );
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(report.done + report.failed, opts.jobs, "every job ended");
    assert!(report.done > opts.jobs / 2, "most jobs succeed");
    assert!(report.versions > 0);
    assert!(report.collections > 0, "the collector ran");
    assert!(
        report.faults.values().sum::<u64>() > 20,
        "faults were injected: {:?}",
        report.faults
    );
}

mod real_time {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn in_memory_actors_keep_their_promises() {
        actors_keep_their_promises(memory()()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn moto_s3_actors_keep_their_promises() {
        if let Some(make) = s3("S3") {
            actors_keep_their_promises(make()).await;
        }
    }
}
