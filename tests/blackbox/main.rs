//! Black-box tests: the real `scr` binary, real SQLite files (and PostgreSQL when
//! `TEST_POSTGRES_URL` is set), real HTTP, real signed tokens. Each test runs against every
//! backend and names the behaviour or rule it checks.

mod harness;

mod alerts;
mod api;
mod audit;
mod conformance;
mod crash;
mod decision_table;
mod demo;
mod dev_idp;
mod errors;
mod explain;
mod fail_closed;
mod faults;
mod federation;
mod federation_plain;
mod hazard_log;
mod ingest;
pub mod mllp;
mod operations;
mod rules;
mod smart_apps;
mod tokens;
