//! PLACEHOLDER with the agreed API, replaced by the real engine at merge.
use crate::config::CellConfig;
use crate::weights::ModelWeights;
pub struct Split {
    pub train: Vec<(u32, u32)>,
    pub test: Vec<(u32, u32)>,
}
pub use crate::analyze::CurvePoint;
pub struct Checkpoint {
    pub step: u64,
    pub latent: ModelWeights,
}
impl Checkpoint {
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        unimplemented!()
    }
    pub fn from_bytes(_b: &[u8]) -> anyhow::Result<Self> {
        unimplemented!()
    }
}
pub struct Progress {
    pub step: u64,
    pub steps: u64,
    pub train_loss: f64,
    pub test_acc: Option<f64>,
}
pub struct TrainHooks<'a> {
    pub threads: usize,
    pub resume: Option<Checkpoint>,
    pub on_checkpoint: &'a mut dyn FnMut(&Checkpoint) -> anyhow::Result<()>,
    pub on_progress: &'a mut dyn FnMut(&Progress),
    pub stop: &'a std::sync::atomic::AtomicBool,
}
pub struct TrainOutput {
    pub split: Split,
    pub init: ModelWeights,
    pub latent: ModelWeights,
    pub effective: ModelWeights,
    pub curves: Vec<CurvePoint>,
    pub seconds: f64,
}
pub fn train_cell(_cfg: &CellConfig, _hooks: TrainHooks) -> anyhow::Result<TrainOutput> {
    unimplemented!()
}
#[derive(Debug)]
pub struct Interrupted;
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "interrupted")
    }
}
impl std::error::Error for Interrupted {}
pub fn checkpoint_step(_p: &std::path::Path) -> anyhow::Result<u64> {
    unimplemented!()
}
