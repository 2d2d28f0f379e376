//! The `dvsql` binary's parts, in the datafusion-cli layout: [`args`] (command line), [`exec`]
//! (running statements), [`cancel`] (stopping them), [`command`] (backslash commands),
//! [`helper`] and [`repl`] (the prompt), [`print`](mod@print) and [`explain`] (output), [`errors`] (error
//! messages a person can act on), [`progress`] (the progress line), [`activity`] (the demo's
//! background changes), [`sync`] (`dvsql sync`, the Delta Lake mirror).

pub mod activity;
pub mod args;
pub mod cancel;
pub mod command;
pub mod errors;
pub mod exec;
pub mod explain;
pub mod helper;
pub mod print;
pub mod progress;
pub mod repl;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sync;
