//! What a sweep produces for people: CSV tables (`aggregate`), plain-text tables for
//! the terminal (`table`), and the HTML report with its figures. Diffing tables is
//! [`crate::diff`]'s, which knows nothing of sweeps.

pub mod aggregate;
pub mod figures;
pub mod html;
pub mod table;
