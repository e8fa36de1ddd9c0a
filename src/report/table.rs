//! Plain-text tables for the terminal: left-aligned columns separated by two spaces.

/// Render `rows` (the first is the header) with every column as wide as its widest
/// cell; trailing spaces are trimmed.
pub fn render(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_lines_are_trimmed() {
        let rows = vec![
            vec!["key".to_string(), "status".to_string()],
            vec!["abcdef".to_string(), "done".to_string()],
        ];
        assert_eq!(super::render(&rows), "key     status\nabcdef  done\n");
    }
}
