//! bitgrok: declarative sweeps that train one-layer transformers on modular addition
//! at several weight precisions and compare the algorithms they learn.
//!
//! Data flow, one module per stage:
//! `spec` (parse + validate a sweep file) -> `grid` (expand into cells) -> `key`
//! (content hash) -> `schedule` (cache, locks, workers) -> `train` (dfdx) ->
//! `analyze` (Fourier signatures) -> `store` (atomic artifacts) -> `aggregate` (CSV).

pub mod bench;
pub mod config;
pub mod data;
pub mod model;
pub mod optim;
pub mod quant;
pub mod reference;
pub mod train;
pub mod weights;
