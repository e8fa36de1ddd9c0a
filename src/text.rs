//! Numbers in the words messages print them with.

/// `n` and the noun, in the singular for 1: "1 cell", "3 cells".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The one spelling of a float (content keys, messages): shortest round-trip decimal,
/// always with a decimal point (`0.001`, `1.0`, `0.00000001`); `-0.0` is written
/// `0.0`. Content keys hash it: changing it changes every key.
pub fn float(f: f64) -> String {
    let f = if f == 0.0 { 0.0 } else { f };
    let s = format!("{f}");
    if s.contains(['.', 'e', 'i', 'N']) {
        s
    } else {
        s + ".0"
    }
}

/// A size in bytes, in the largest binary unit it fills: "512 B", "34.5 MiB".
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// A loss for progress lines: four decimals, or two significant digits in
/// scientific notation when that would print a non-zero loss as 0.0000.
pub fn loss(x: f64) -> String {
    if x != 0.0 && x.abs() < 5e-5 {
        format!("{x:.1e}")
    } else {
        format!("{x:.4}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn singular_for_one_only() {
        assert_eq!(super::count(1, "cell"), "1 cell");
        assert_eq!(super::count(0, "cell"), "0 cells");
        assert_eq!(super::count(27, "job"), "27 jobs");
    }

    #[test]
    fn small_losses_are_not_printed_as_zero() {
        assert_eq!(super::loss(1.2e-7), "1.2e-7");
        assert_eq!(super::loss(0.0), "0.0000");
        assert_eq!(super::loss(0.5), "0.5000");
        assert_eq!(super::loss(6e-5), "0.0001");
    }
}
