//! The `dvsql` binary's parts, in the datafusion-cli layout: [`args`] (command line), [`exec`]
//! (running statements), [`command`] (backslash commands), [`helper`] and [`repl`] (the
//! prompt), [`print`] (output formats), [`progress`] (the progress line).

pub mod args;
pub mod command;
pub mod exec;
pub mod helper;
pub mod print;
pub mod progress;
pub mod repl;
