//! Ground truth for the labels: models written by hand whose algorithm is known
//! (src/analysis/planted.rs) must be labelled as what they are, at every level.

use bitgrok::analysis::labels::{Form, Label, Pattern, Routing};
use bitgrok::analysis::planted::{planted, Planted};
use bitgrok::analysis::{analyze, Signature};
use bitgrok::config::{AnalysisConfig, Arch};

const P: usize = 31;
const FREQS: [usize; 3] = [3, 7, 12];

fn signature(kind: Planted, arch: Arch) -> Signature {
    let m = planted(kind, arch, P, &FREQS).expect("plantable");
    let sig = analyze(&m, None, None, &AnalysisConfig::default()).expect("analysable");
    eprintln!(
        "{kind:?} {arch}: acc {:.4} loss {:.3e} keys {:?} patterns {:?} di {:?} di_wrong {:?} \
         symmetricity {:.4} ablation {:+.3} tv {:.4} form {:?} label {}",
        sig.outcome.all_pairs_acc,
        sig.outcome.all_pairs_loss,
        sig.neurons.key_frequencies,
        sig.algorithm.logit_patterns,
        sig.algorithm.distance_irrelevance,
        sig.algorithm.distance_irrelevance_max_wrong,
        sig.algorithm.gradient_symmetricity,
        sig.algorithm.ablation.loss_increase,
        sig.algorithm.attention.tv_from_uniform,
        sig.algorithm.neuron_form,
        sig.algorithm.label,
    );
    sig
}

#[test]
fn planted_clock_is_a_clock_at_every_level() {
    let s = signature(Planted::Clock, Arch::Nanda2023);
    assert_eq!(s.outcome.all_pairs_acc, 1.0);
    assert_eq!(s.neurons.key_frequencies, FREQS);
    assert_eq!(s.algorithm.routing, Routing::Content);
    assert_eq!(s.algorithm.pattern, Pattern::Clock);
    assert_eq!(s.algorithm.neuron_form_label, Form::Degree1);
    assert_eq!(s.algorithm.label, Label::Clock);
    for x in &s.algorithm.logit_patterns {
        assert!(x.clock > 0.95 && x.clock - x.pizza > 0.15, "{x:?}");
    }
    // Neurons read a and b in independent phases (an 8 × 8 grid).
    let form = s.algorithm.neuron_form.as_ref().unwrap();
    assert!(
        form.degree1_mean > 0.99 && form.phase_alignment < 0.05,
        "{form:?}"
    );
    // Attention routes: with it made uniform, the loss rises from ≈ 2e-6 to ≈ 0.11.
    assert!(
        s.algorithm.ablation.loss_increase > 0.1,
        "{:?}",
        s.algorithm.ablation
    );
}

#[test]
fn planted_pizzas_are_pizzas_in_both_architectures() {
    for arch in [Arch::Nanda2023, Arch::Li2024] {
        let s = signature(Planted::Pizza, arch);
        assert_eq!(s.outcome.all_pairs_acc, 1.0, "{arch}");
        assert_eq!(s.neurons.key_frequencies, FREQS, "{arch}");
        assert_eq!(s.algorithm.routing, Routing::Uniform, "{arch}");
        assert_eq!(s.algorithm.pattern, Pattern::Pizza, "{arch}");
        assert_eq!(s.algorithm.neuron_form_label, Form::Degree1, "{arch}");
        assert_eq!(s.algorithm.label, Label::Pizza, "{arch}");
        for x in &s.algorithm.logit_patterns {
            assert!(x.pizza > 0.95 && x.pizza - x.clock > 0.15, "{arch} {x:?}");
        }
        // Uniform attention: a and b in one phase, symmetric gradients, and a correct
        // logit that depends on a − b only.
        let form = s.algorithm.neuron_form.as_ref().unwrap();
        assert!(form.phase_alignment > 0.999, "{form:?}");
        assert!((s.algorithm.gradient_symmetricity - 1.0).abs() < 1e-6);
        // The phase grid's aliasing leaves a little dependence on a + b.
        assert!(s.algorithm.distance_irrelevance.unwrap() < 0.15, "{arch}");
        assert!(s.algorithm.ablation.loss_increase.abs() < 1e-6, "{arch}");
    }
}

#[test]
fn a_lookup_table_is_not_fourier() {
    for arch in [Arch::Nanda2023, Arch::Li2024] {
        let m = planted(Planted::Lookup, arch, 11, &[]).unwrap();
        let s = analyze(&m, None, None, &AnalysisConfig::default()).unwrap();
        assert_eq!(s.outcome.all_pairs_acc, 1.0, "{arch}");
        assert!(s.neurons.key_frequencies.is_empty(), "{arch}");
        assert_eq!(s.algorithm.label, Label::NoFourier, "{arch}");
        assert_eq!(s.algorithm.pattern, Pattern::None, "{arch}");
    }
}

#[test]
fn li2024_cannot_hold_the_planted_clock() {
    let err = planted(Planted::Clock, Arch::Li2024, P, &FREQS).unwrap_err();
    assert!(err.to_string().contains("exchangeable"), "{err}");
}
