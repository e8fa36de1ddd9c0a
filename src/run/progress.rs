//! Progress display of a run: indicatif bars on a terminal, plain lines otherwise.

use crate::engine::train::Progress;
use crate::sweep::cell::{short, Cell};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Progress display: indicatif bars on a terminal (an overall bar over the steps of
/// all cells to train, whose rate gives the ETA, and one bar per running cell),
/// plain periodic lines otherwise.
pub struct Reporter {
    multi: Option<MultiProgress>,
    overall: ProgressBar,
    started: Instant,
    last_line: Mutex<Instant>,
    /// Per running cell: the last step reported, to advance the overall bar.
    seen: Mutex<std::collections::HashMap<String, u64>>,
    cells: usize,
    settled: Mutex<usize>,
}

impl Reporter {
    pub fn new(cells: usize, total_steps: u64) -> Reporter {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        let overall = match &multi {
            Some(m) => m.add(ProgressBar::new(total_steps)),
            None => ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::hidden()),
        };
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {msg}  {elapsed} elapsed  ETA {eta}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        overall.set_prefix("sweep");
        overall.set_message(format!("0/{cells} cells"));
        Reporter {
            multi,
            overall,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now() - Duration::from_secs(60)),
            seen: Mutex::new(Default::default()),
            cells,
            settled: Mutex::new(0),
        }
    }

    pub fn line(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    pub fn advance(&self, cell: &Cell, step: u64) {
        let mut seen = self.seen.lock().unwrap();
        let last = seen.entry(cell.key.clone()).or_insert(0);
        self.overall.inc(step.saturating_sub(*last));
        *last = step.max(*last);
    }

    pub fn cell_started(&self, cell: &Cell, step: u64) -> ProgressBar {
        self.advance(cell, step);
        let bar = match &self.multi {
            Some(m) => m.add(ProgressBar::new(cell.config.train.steps)),
            None => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(cell.key[..8].to_string());
        bar.set_position(step);
        bar.set_message(cell.label());
        if self.multi.is_none() {
            eprintln!(
                "training {} [{}] from step {step}",
                short(&cell.key),
                cell.label()
            );
        }
        bar
    }

    pub fn cell_progress(&self, bar: &ProgressBar, cell: &Cell, p: &Progress) {
        self.advance(cell, p.step);
        bar.set_position(p.step);
        let acc = p
            .test_acc
            .map(|a| format!(" test_acc {a:.3}"))
            .unwrap_or_default();
        let loss = crate::text::loss(p.train_loss);
        bar.set_message(format!("{} loss {loss}{acc}", cell.label()));
        if self.multi.is_none() {
            let mut last = self.last_line.lock().unwrap();
            if last.elapsed() >= Duration::from_secs(10) {
                *last = Instant::now();
                eprintln!(
                    "  {} step {}/{} loss {loss}{acc} ({:.0}s elapsed)",
                    short(&cell.key),
                    p.step,
                    p.steps,
                    self.started.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// A cell is done, failed or was found done by another process.
    pub fn cell_settled(&self, cell: &Cell) {
        self.advance(cell, cell.config.train.steps);
        let mut n = self.settled.lock().unwrap();
        *n += 1;
        self.overall
            .set_message(format!("{}/{} cells", *n, self.cells));
        if self.multi.is_none() {
            eprintln!(
                "[{}/{}] {} [{}] settled ({:.1}s elapsed)",
                *n,
                self.cells,
                short(&cell.key),
                cell.label(),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}
