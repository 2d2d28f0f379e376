//! The end-to-end tests, one module per subject, linked into one test binary.
//!
//! One binary instead of one per file: each test binary links DataFusion, deltalake and
//! pgwire, about 275 MB with line tables, so 28 of them took 8 GB of disk and 28 links in CI.
//! `Cargo.toml` sets `autotests = false` and names this file the only integration test target.
//! Run one subject with a filter on its module: `cargo test --test integration sync::`.

mod common;

mod airbyte;
mod architecture;
mod changes;
mod cli;
mod cli_cancel;
mod cli_changes;
mod cli_repl;
mod cli_security;
mod cli_sync;
mod conformance;
mod environments;
mod faults;
mod join_pushdown;
mod labels;
mod literal_escaping;
mod parallel;
mod provider;
mod pushdown_differential;
mod pushdown_rules;
mod query_limits;
mod serve;
mod server_model;
mod sim_limits;
mod sim_query;
mod sim_service;
mod summaries;
mod sync;
mod sync_crash;
