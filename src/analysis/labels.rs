//! Which algorithm a model learned, per level and in one word (README, "Labels").
//!
//! The literature now separates levels that one word used to carry (science.md §6):
//! attention routing (does the model need its attention to depend on the input?),
//! the logit pattern (Zhong et al.'s clock or pizza), and the neurons' form
//! (McCracken et al.'s degree-1 neurons). Each level is read from its own measure;
//! the summary label is the logit pattern's answer, the one Zhong et al. name the
//! algorithms by, once the model generalised and is Fourier-based.

use crate::analysis::mechanism::{LogitPattern, NeuronFormSummary};
use crate::config::AnalysisConfig;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a label enum with its kebab-case words, written once for tables, JSON,
/// figures and the summary's counts.
macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $word)] $variant,)*
        }
        impl $name {
            /// Every value, in the order tables count them.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The word tables and figures print.
            pub fn word(self) -> &'static str {
                match self { $($name::$variant => $word,)* }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }
    };
}

word_enum! {
    /// The summary label, first that applies (see [`summary_label`]).
    Label {
        /// Every key frequency's logits follow the clock pattern.
        Clock = "clock",
        /// Every key frequency's logits follow the pizza pattern.
        Pizza = "pizza",
        /// Some key frequencies clock-like, others pizza-like.
        Mixed = "mixed",
        /// A key frequency whose pattern the test cannot decide.
        Undecided = "undecided",
        /// No key frequency, or they explain too little of the logits.
        NoFourier = "no-fourier",
        /// Final test accuracy below `accuracy_threshold`.
        NotGeneralised = "not-generalised",
    }
}

word_enum! {
    /// Attention routing, from the attention ablation.
    Routing {
        /// Replacing position-2 attention by uniform raises the all-pairs loss by at
        /// least `routing_min_loss_increase`: the model needs its attention to depend
        /// on the input.
        Content = "content-dependent",
        /// It raises the loss by less: the model computes as if attention were uniform.
        Uniform = "uniform",
    }
}

word_enum! {
    /// The logit pattern of one key frequency or of the model.
    Pattern {
        Clock = "clock",
        Pizza = "pizza",
        /// Key frequencies disagree (model level only).
        Mixed = "mixed",
        /// The two scores are closer than `pattern_min_margin`.
        Undecided = "undecided",
        /// No key frequency to test.
        None = "none",
    }
}

word_enum! {
    /// The clustered neurons' form, from their pre-activations.
    Form {
        /// Degree-1 share ≥ `neuron_form_dominance` × the degree-2 share, and ≥ 0.5.
        Degree1 = "degree-1",
        /// Degree-2 share ≥ `neuron_form_dominance` × the degree-1 share.
        Degree2 = "degree-2",
        Undecided = "undecided",
        /// No clustered neuron.
        None = "none",
    }
}

/// The pattern of one key frequency: the higher score when it leads by at least
/// `pattern_min_margin` and is at least `pattern_min_score`.
pub fn frequency_pattern(x: &LogitPattern, cfg: &AnalysisConfig) -> Pattern {
    if x.clock.max(x.pizza) < cfg.pattern_min_score {
        Pattern::Undecided
    } else if x.clock - x.pizza >= cfg.pattern_min_margin {
        Pattern::Clock
    } else if x.pizza - x.clock >= cfg.pattern_min_margin {
        Pattern::Pizza
    } else {
        Pattern::Undecided
    }
}

/// The model's pattern: the key frequencies' common one; `undecided` if any is
/// undecided, `mixed` if they disagree, `none` without key frequencies.
pub fn model_pattern(per_frequency: &[Pattern]) -> Pattern {
    let Some(&first) = per_frequency.first() else {
        return Pattern::None;
    };
    if per_frequency.contains(&Pattern::Undecided) {
        Pattern::Undecided
    } else if per_frequency.iter().all(|&p| p == first) {
        first
    } else {
        Pattern::Mixed
    }
}

/// Routing from the ablation's loss increase.
pub fn routing(loss_increase: f64, cfg: &AnalysisConfig) -> Routing {
    if loss_increase >= cfg.routing_min_loss_increase {
        Routing::Content
    } else {
        Routing::Uniform
    }
}

/// The neurons' form from their summary.
pub fn form(s: Option<&NeuronFormSummary>, cfg: &AnalysisConfig) -> Form {
    let Some(s) = s else {
        return Form::None;
    };
    let k = cfg.neuron_form_dominance;
    if s.degree1_mean >= 0.5 && s.degree1_mean >= k * s.degree2_mean {
        Form::Degree1
    } else if s.degree2_mean >= k * s.degree1_mean {
        Form::Degree2
    } else {
        Form::Undecided
    }
}

/// What the summary label reads.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelInputs {
    pub generalised: bool,
    pub n_key_frequencies: usize,
    pub logits_explained: f64,
    pub pattern: Pattern,
}

/// The summary label, first that applies: `not-generalised`; `no-fourier` (no key
/// frequency, or they explain less than `fourier_min_logits_explained` of the
/// logits); then the model's logit pattern: `clock`, `pizza`, `mixed` or
/// `undecided`.
pub fn summary_label(x: &LabelInputs, cfg: &AnalysisConfig) -> Label {
    if !x.generalised {
        Label::NotGeneralised
    } else if x.n_key_frequencies == 0 || x.logits_explained < cfg.fourier_min_logits_explained {
        Label::NoFourier
    } else {
        match x.pattern {
            Pattern::Clock => Label::Clock,
            Pattern::Pizza => Label::Pizza,
            Pattern::Mixed => Label::Mixed,
            Pattern::Undecided | Pattern::None => Label::Undecided,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rule_keeps_failure_modes_apart() {
        let cfg = AnalysisConfig::default();
        let clock = LabelInputs {
            generalised: true,
            n_key_frequencies: 3,
            logits_explained: 0.9,
            pattern: Pattern::Clock,
        };
        let with = |f: &dyn Fn(&mut LabelInputs)| {
            let mut x = clock.clone();
            f(&mut x);
            summary_label(&x, &cfg)
        };
        assert_eq!(with(&|_| {}), Label::Clock);
        assert_eq!(with(&|x| x.generalised = false), Label::NotGeneralised);
        assert_eq!(with(&|x| x.n_key_frequencies = 0), Label::NoFourier);
        assert_eq!(with(&|x| x.logits_explained = 0.01), Label::NoFourier);
        assert_eq!(with(&|x| x.pattern = Pattern::Pizza), Label::Pizza);
        assert_eq!(with(&|x| x.pattern = Pattern::Mixed), Label::Mixed);
        assert_eq!(with(&|x| x.pattern = Pattern::Undecided), Label::Undecided);
    }

    #[test]
    fn model_pattern_needs_every_frequency_to_agree() {
        use Pattern::*;
        assert_eq!(model_pattern(&[]), None);
        assert_eq!(model_pattern(&[Clock, Clock]), Clock);
        assert_eq!(model_pattern(&[Pizza]), Pizza);
        assert_eq!(model_pattern(&[Clock, Pizza]), Mixed);
        assert_eq!(model_pattern(&[Clock, Undecided, Pizza]), Undecided);
        let cfg = AnalysisConfig::default();
        let fp = |clock, pizza| {
            frequency_pattern(
                &LogitPattern {
                    frequency: 1,
                    clock,
                    pizza,
                },
                &cfg,
            )
        };
        assert_eq!(fp(1.0, 0.8), Clock);
        assert_eq!(fp(0.8, 1.0), Pizza);
        assert_eq!(fp(0.9, 0.9), Undecided);
        // Matching neither pattern is no evidence for the less bad one.
        assert_eq!(fp(-0.27, -0.36), Undecided);
    }

    #[test]
    fn words_round_trip_through_json() {
        for &l in Label::ALL {
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{}\"", l.word()));
            assert_eq!(serde_json::from_str::<Label>(&json).unwrap(), l);
        }
        assert_eq!(Routing::Content.word(), "content-dependent");
        assert_eq!(Form::Degree1.to_string(), "degree-1");
    }
}
