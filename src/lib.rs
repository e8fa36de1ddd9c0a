//! bitgrok: declarative sweeps that train one-layer transformers on modular addition
//! at several weight precisions and compare the algorithms they learn.
//!
//! Data flow, one module per stage:
//! `spec` (parse + validate a sweep file) -> `grid` (expand into cells) -> `key`
//! (content hash) -> `schedule` (cache, locks, workers) -> `train` (dfdx) ->
//! `analyze` (Fourier signatures) -> `store` (atomic artifacts) -> `aggregate` (CSV).

pub mod aggregate;
pub mod analyze;
pub mod cli;
pub mod config;
pub mod fourier;
pub mod grid;
pub mod key;
pub mod spec;
pub mod store;
pub mod weights;
