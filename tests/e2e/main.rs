//! The end-to-end suites: the real `exposr-trainer` binary, the built `.wasm` components under the
//! embedded host and `wasmtime serve`, workers as separate processes over the moto S3 server, and
//! the fakes of the third-party APIs the trainer calls (in `fakes`). One test crate, so the suites
//! link once; `common` is what they share.
//!
//! `scripts/test` builds the components, starts the S3 servers and sets `EXPOSR_REQUIRE_*`, so a
//! missing part fails the run instead of skipping a test.

mod common;
mod fakes;

mod a3cp;
mod cli;
mod crowdmind;
mod detector;
mod limits;
mod openapi;
mod scrape;
mod serve;
mod train;
mod wasmtime_serve;
mod worker;
