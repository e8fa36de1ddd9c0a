//! What a sweep produces for people: CSV tables (`aggregate`), their diff, and
//! plain-text tables for the terminal (`table`).

pub mod aggregate;
pub mod diff;
pub mod table;
