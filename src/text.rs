//! Numbers in the words messages print them with.

/// `n` and the noun, in the singular for 1: "1 cell", "3 cells".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
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
