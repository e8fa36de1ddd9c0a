//! Running cells: the local scheduler (cache lookup, locks, workers, progress) and
//! Slurm job arrays.

pub mod schedule;
pub mod slurm;
