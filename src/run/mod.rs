//! Running cells: the local scheduler (cache lookup, locks, workers), its progress
//! display, and Slurm job arrays.

pub mod progress;
pub mod schedule;
pub mod slurm;
