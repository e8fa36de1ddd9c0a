//! PLACEHOLDER replaced at merge.
pub fn aggregate_sweep(
    _r: &std::path::Path,
    _s: &crate::spec::Sweep,
    _c: &[crate::grid::Cell],
    _o: &std::path::Path,
) -> anyhow::Result<String> {
    Ok(String::new())
}
