//! Training one cell: data split, quantizers, the model and its fused ops, AdamW and
//! Grokfast, the training loop, the record of E_='s updates, weights files, and the f64 reference used by tests.

pub mod bench;
pub mod data;
pub mod eq_update;
pub mod export;
pub mod model;
pub mod model_file;
pub mod optim;
pub mod quant;
pub mod reference;
pub mod safetensors_io;
pub mod train;
pub mod weights;
