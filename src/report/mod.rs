//! What a sweep produces for people: CSV tables (`aggregate`) and their diff.

pub mod aggregate;
pub mod diff;
