//! What a sweep produces for people: CSV tables (`aggregate`), their diff, plain-text
//! tables for the terminal (`table`), and the HTML report with its figures.

pub mod aggregate;
pub mod diff;
pub mod diff_markdown;
pub mod figures;
pub mod html;
pub mod table;
