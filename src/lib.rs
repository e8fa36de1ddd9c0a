//! bitgrok: declarative sweeps that train one-layer transformers on modular addition
//! at several weight precisions and compare the algorithms they learn.
//!
//! One folder per stage of the data flow; dependencies point down only:
//! `cli` -> `run` (scheduler, Slurm) -> `sweep` (parse, validate, expand a sweep
//! file), `store` (atomic artifacts), `analysis` (Fourier signatures), `report`
//! (CSV tables, report) -> `engine` (data, quantizers, model, training) -> `config`,
//! `key` (the settings of a cell and its content hash), `text` (numbers in words).
//! `diff` (a tolerant diff of CSV tables) stands apart: it knows nothing of sweeps.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod diff;
pub mod engine;
pub mod key;
pub mod report;
pub mod run;
pub mod store;
pub mod sweep;
pub mod text;
