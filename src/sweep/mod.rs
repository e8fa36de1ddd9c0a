//! Sweep files: parse and validate (`spec`), expand into cells (`grid`).

pub mod grid;
pub mod spec;
