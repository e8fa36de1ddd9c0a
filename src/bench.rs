//! PLACEHOLDER replaced at merge.
pub struct BenchReport {
    pub train_pairs: usize,
}
impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "")
    }
}
pub fn bench(
    _c: &crate::config::CellConfig,
    _w: usize,
    _i: usize,
    _t: usize,
) -> anyhow::Result<BenchReport> {
    unimplemented!()
}
