use super::clock_pizza::gradient_symmetricity;
use super::forward::tests::random_model;
use super::*;
use crate::engine::weights::Mat;

/// `w` run without activation quantization at attention rate `rate`.
fn at_rate(w: &crate::engine::weights::ModelWeights, rate: f64) -> Model {
    Model {
        attention: crate::config::AttentionMix {
            rate,
            ..crate::config::AttentionMix::SOFTMAX
        },
        ..Model::plain(w.clone())
    }
}

fn small_cfg() -> AnalysisConfig {
    AnalysisConfig {
        symmetricity_triples: 20,
        ..AnalysisConfig::default()
    }
}

#[test]
fn uniform_attention_is_pizza_like_and_content_attention_is_not() {
    // W_Q = 0: every score is 0, attention is uniform, and the model sees
    // x₀ + x₁ only (the "pizza" condition): both gradients are equal.
    let mut pizza = random_model(Arch::Li2024, 11, 16, 4, 32, 5);
    pizza.w_q.data.iter_mut().for_each(|v| *v = 0.0);
    let (s_pizza, n) = gradient_symmetricity(&at_rate(&pizza, 1.0), &small_cfg());
    assert!((s_pizza - 1.0).abs() < 1e-9, "pizza symmetricity {s_pizza}");
    assert_eq!(n, 20);
    // Strong content-dependent attention multiplies a-terms and b-terms...
    let mut clock = random_model(Arch::Li2024, 11, 16, 4, 32, 5);
    clock.w_q.data.iter_mut().for_each(|v| *v *= 4.0);
    let (s_clock, _) = gradient_symmetricity(&at_rate(&clock, 1.0), &small_cfg());
    assert!(s_clock < 0.9, "content attention symmetricity {s_clock}");
    // ... unless attention rate 0 makes it uniform.
    let (s_rate0, _) = gradient_symmetricity(&at_rate(&clock, 0.0), &small_cfg());
    assert!(
        (s_rate0 - 1.0).abs() < 1e-9,
        "rate 0 symmetricity {s_rate0}"
    );
    // All p³ triples when there are few enough.
    let all = AnalysisConfig {
        symmetricity_triples: 11 * 11 * 11,
        ..small_cfg()
    };
    assert_eq!(gradient_symmetricity(&at_rate(&clock, 1.0), &all).1, 1331);
}

#[test]
fn attention_statistics_see_uniform_and_content_attention() {
    let mut w = random_model(Arch::Li2024, 11, 16, 4, 32, 5);
    w.w_q.data.iter_mut().for_each(|v| *v *= 4.0);
    let content = analyze(&at_rate(&w, 1.0), None, None, &small_cfg()).unwrap();
    let att = &content.algorithm.attention;
    assert!(!att.uniform && att.tv_from_uniform > 0.05, "{att:?}");
    assert_eq!(att.heads.len(), 4);
    let rate0 = analyze(&at_rate(&w, 0.0), None, None, &small_cfg()).unwrap();
    let att0 = &rate0.algorithm.attention;
    assert!(att0.uniform && att0.constant && att0.tv_from_uniform < 1e-12);
    // W_Q·W_Kᵀ does not depend on the rate; it scales with W_Q.
    assert_eq!(att0.qk_norm, att.qk_norm);
    w.w_q.data.iter_mut().for_each(|v| *v *= 0.5);
    let half = analyze(&at_rate(&w, 1.0), None, None, &small_cfg()).unwrap();
    let ratio = half.algorithm.attention.qk_norm / att.qk_norm;
    assert!((ratio - 0.5).abs() < 1e-5, "{ratio}");
    // li2024 has a final norm: a pre-norm profile exists; nanda2023 has none.
    assert!(content.algorithm.norm_split.is_some());
    let nanda = random_model(Arch::Nanda2023, 11, 16, 4, 32, 5);
    let sig = analyze(&at_rate(&nanda, 1.0), None, None, &small_cfg()).unwrap();
    assert!(sig.algorithm.norm_split.is_none());
}

#[test]
fn random_weights_have_no_clusters_and_a_flat_spectrum() {
    let w = random_model(Arch::Nanda2023, 31, 32, 4, 64, 7);
    let sig = analyze(&at_rate(&w, 1.0), None, None, &small_cfg()).unwrap();
    assert_eq!(sig.neurons.clustered, 0, "{:?}", sig.neurons);
    assert!(sig.neurons.key_frequencies.is_empty());
    assert!(sig.embedding.gini < 0.35, "gini {}", sig.embedding.gini);
    assert_eq!(
        sig.algorithm.label,
        crate::analysis::labels::Label::NotGeneralised
    );
    assert_eq!(sig.outcome.source, OutcomeSource::WeightsAllPairs);
    assert_eq!(sig.quantization.len(), 6);
    assert!(sig.quantization.iter().all(|q| q.distinct_values_over_cap));
}

#[test]
fn analysing_twice_gives_identical_json() {
    let w = random_model(Arch::Li2024, 13, 16, 4, 64, 9);
    let split = TrainSplit {
        train: (0..13 * 13).step_by(3).map(|i| (i / 13, i % 13)).collect(),
    };
    let a = signature_json(&analyze(&at_rate(&w, 1.0), None, Some(&split), &small_cfg()).unwrap())
        .unwrap();
    let b = signature_json(&analyze(&at_rate(&w, 1.0), None, Some(&split), &small_cfg()).unwrap())
        .unwrap();
    assert_eq!(a, b);
    let sig: Signature = serde_json::from_str(&a).unwrap();
    assert_eq!(sig.outcome.source, OutcomeSource::WeightsSplit);
    assert_eq!(sig.logits.excluded_pairs, "train");
    assert_eq!(sig.logits.restricted_pairs, "test");
}

#[test]
fn outcome_timings_come_from_the_curves() {
    let w = random_model(Arch::Li2024, 7, 8, 2, 16, 1);
    let point = |step, train_acc, test_acc| CurvePoint {
        step,
        train_loss: 1.0 - train_acc,
        train_acc,
        test_loss: 1.0 - test_acc,
        test_acc,
    };
    let curves = [
        point(0, 0.1, 0.0),
        point(100, 0.995, 0.2),
        point(200, 1.0, 0.5),
        point(300, 1.0, 0.999),
        point(400, 1.0, 1.0),
    ];
    let sig = analyze(&at_rate(&w, 1.0), Some(&curves), None, &small_cfg()).unwrap();
    let o = &sig.outcome;
    assert_eq!(o.step_memorised, Some(100));
    assert_eq!(o.step_generalised, Some(300));
    assert_eq!(o.grokking_gap, Some(200));
    assert!(o.generalised && o.grokked);
    assert_eq!(o.final_test_acc, Some(1.0));
    assert!(analyze(&at_rate(&w, 1.0), Some(&[]), None, &small_cfg()).is_err());
    // Test accuracy that reaches the threshold after memorisation and falls back:
    // grokked, not generalised.
    let fell = [
        point(0, 0.1, 0.0),
        point(100, 1.0, 0.5),
        point(200, 1.0, 0.995),
        point(300, 1.0, 0.97),
    ];
    let o = analyze(&at_rate(&w, 1.0), Some(&fell), None, &small_cfg())
        .unwrap()
        .outcome;
    assert_eq!(
        (o.step_memorised, o.step_generalised),
        (Some(100), Some(200))
    );
    assert!(o.grokked && !o.generalised);
    // Both at the same evaluation: generalised, not grokked.
    let together = [point(0, 0.1, 0.0), point(100, 1.0, 1.0)];
    let o = analyze(&at_rate(&w, 1.0), Some(&together), None, &small_cfg())
        .unwrap()
        .outcome;
    assert_eq!(o.grokking_gap, Some(0));
    assert!(o.generalised && !o.grokked);
}

#[test]
fn quantization_stats_of_a_ternary_matrix() {
    let m = Mat::from_vec(2, 4, vec![0.5, -0.5, 0.0, -0.0, 0.5, 0.5, 0.0, -0.5]);
    let s = matrix_stats("blocks.0.attn.W_Q", &m.data);
    assert_eq!(s.zero_fraction, 0.375);
    assert_eq!(s.distinct_values, 3);
    assert!(!s.distinct_values_over_cap);
    assert_eq!(s.max_abs, 0.5);
    assert!((s.mean_abs - 0.3125).abs() < 1e-12);
}

#[test]
fn bad_split_and_non_finite_weights_are_reported() {
    let w = random_model(Arch::Li2024, 7, 8, 2, 16, 1);
    let split = TrainSplit {
        train: vec![(0, 9)],
    };
    let err = analyze(&at_rate(&w, 1.0), None, Some(&split), &small_cfg()).unwrap_err();
    assert!(err.to_string().contains("(0, 9)"), "{err}");
    let mut diverged = w.clone();
    diverged.w_in.data[5] = f32::NAN;
    let err = analyze(&at_rate(&diverged, 1.0), None, None, &small_cfg()).unwrap_err();
    assert!(err.to_string().contains("blocks.0.mlp.W_in"), "{err}");
}

#[test]
fn analyze_file_writes_signature_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let w = random_model(Arch::Nanda2023, 7, 8, 2, 16, 4);
    let model = dir.path().join("model.safetensors");
    let bytes =
        crate::engine::weights::to_safetensors_bytes(&w.to_named(), &Default::default()).unwrap();
    std::fs::write(&model, bytes).unwrap();
    let out = dir.path().join("analysis");
    let err = analyze_file(&model, &Described::default(), &small_cfg(), &out).unwrap_err();
    assert!(err.to_string().contains("--arch"), "{err}");
    let nanda = Described {
        arch: Some(Arch::Nanda2023),
        act_bits: Some(0),
        attention_rate: Some(1.0),
        ..Described::default()
    };
    let sig = analyze_file(&model, &nanda, &small_cfg(), &out).unwrap();
    assert_eq!(sig.arch, Arch::Nanda2023);
    let json = std::fs::read_to_string(out.join("signature.json")).unwrap();
    assert_eq!(json, signature_json(&sig).unwrap());
    let freqs = std::fs::read_to_string(out.join("frequencies.csv")).unwrap();
    assert!(freqs.starts_with("frequency,embedding_norm,"));
    assert_eq!(freqs.lines().count(), 1 + 4);
    let neurons = std::fs::read_to_string(out.join("neurons.csv")).unwrap();
    assert_eq!(neurons.lines().count(), 1 + 16);
    let missing = analyze_file(
        &dir.path().join("nope.safetensors"),
        &nanda,
        &small_cfg(),
        &out,
    );
    assert!(missing
        .unwrap_err()
        .to_string()
        .contains("nope.safetensors"));
}

#[test]
fn planted_model_neurons_and_embedding_are_recovered_through_the_forward_pass() {
    // Embedding columns (cos, sin) of two frequencies; uniform attention with
    // identity W_V, W_O passes (E_a + E_b)/3 on; each neuron reads one frequency's
    // pair at a phase and a large bias keeps it in ReLU's linear part, so its
    // activation is exactly a frequency-k function of a and b. The last neuron is
    // switched off by a negative bias.
    let (p, d, d_mlp) = (23, 8, 16);
    let keys = [3usize, 8];
    let mut w = random_model(Arch::Nanda2023, p, d, 2, d_mlp, 11);
    w.w_e = Mat::zeros(p + 1, d);
    for x in 0..p {
        for (g, &k) in keys.iter().enumerate() {
            let t = 2.0 * std::f64::consts::PI * (k * x) as f64 / p as f64;
            w.w_e.data[x * d + 2 * g] = t.cos() as f32;
            w.w_e.data[x * d + 2 * g + 1] = t.sin() as f32;
        }
    }
    w.w_pos = Some(Mat::zeros(3, d));
    w.w_q = Mat::zeros(d, d);
    let identity = Mat::from_vec(
        d,
        d,
        (0..d * d).map(|i| (i / d == i % d) as u8 as f32).collect(),
    );
    w.w_v = identity.clone();
    w.w_o = identity;
    w.w_in = Mat::zeros(d, d_mlp);
    for n in 0..d_mlp {
        let (g, phase) = (n % 2, n as f32 * 0.4);
        w.w_in.data[2 * g * d_mlp + n] = phase.cos();
        w.w_in.data[(2 * g + 1) * d_mlp + n] = phase.sin();
    }
    let mut b_in = vec![10.0; d_mlp];
    b_in[d_mlp - 1] = -10.0;
    w.b_in = Some(b_in);

    let sig = analyze(&at_rate(&w, 1.0), None, None, &small_cfg()).unwrap();
    assert_eq!(sig.neurons.key_frequencies, keys.to_vec());
    assert_eq!(sig.neurons.dead, 1);
    assert_eq!(sig.neurons.clustered, d_mlp - 1);
    let per_key: Vec<usize> = sig
        .neurons
        .neurons_per_key_frequency
        .iter()
        .map(|k| k.neurons)
        .collect();
    assert_eq!(per_key, vec![8, 7]);
    for row in sig.neuron_table.iter().filter(|r| !r.dead) {
        assert_eq!(row.best_frequency, Some(keys[row.neuron % 2]));
        assert!(row.fve > 0.9999, "neuron {} fve {}", row.neuron, row.fve);
    }
    assert_eq!(sig.embedding.frequencies_for_coverage, 2);
    assert!(sig.embedding.gini > 0.8, "gini {}", sig.embedding.gini);
    assert!((sig.algorithm.gradient_symmetricity - 1.0).abs() < 1e-9);
    let key_rows: Vec<usize> = sig
        .frequency_table
        .iter()
        .filter(|r| r.key)
        .map(|r| r.frequency)
        .collect();
    assert_eq!(key_rows, keys.to_vec());
}

#[test]
fn analysis_key_follows_the_settings() {
    let cfg = AnalysisConfig::default();
    assert_eq!(analysis_key(&cfg), analysis_key(&cfg.clone()));
    let other = AnalysisConfig {
        fve_threshold: 0.9,
        ..cfg.clone()
    };
    assert_ne!(analysis_key(&cfg), analysis_key(&other));
}

#[test]
fn unit_size_quantized_weights_start_with_content_dependent_scores() {
    // The seed study's cell shape. At initialisation the read-out scores barely vary
    // over the keys in fp32 (small weights), but ±1 entries are 10-30× the initial
    // mean |W|, so the same seed's ±1 model starts with scores that do; at a fixed
    // magnitude equal to the initial mean |W| it starts like fp32.
    let cell = |precision, scale: crate::config::QuantScale| {
        let mut c = crate::config::CellConfig {
            precision,
            modulus: 113,
            width: 128,
            ..crate::config::CellConfig::default()
        };
        // The magnitude sweep's fixed magnitude: binary's β taken once at init.
        c.quant.binary_scale = scale == crate::config::QuantScale::Initial;
        c.quant.scale = scale;
        c
    };
    use crate::config::{Precision, QuantScale};
    let fp32 = initial_query_path(&cell(Precision::Fp32, QuantScale::PerStep));
    let unit = initial_query_path(&cell(Precision::Binary, QuantScale::PerStep));
    let fixed = initial_query_path(&cell(Precision::Binary, QuantScale::Initial));
    assert!(fp32.score_spread > 0.0);
    assert!(
        unit.score_spread > 50.0 * fp32.score_spread,
        "±1 {} vs fp32 {}",
        unit.score_spread,
        fp32.score_spread
    );
    let ratio = fixed.score_spread / fp32.score_spread;
    assert!(
        (0.2..5.0).contains(&ratio),
        "fixed magnitude / fp32 = {ratio}"
    );
    // The embedding is fp32 in every precision: the same initial E_= for one seed.
    assert_eq!(fp32.eq_norm_ratio, unit.eq_norm_ratio);
}

#[test]
fn cutting_the_eq_inputs_routes_is_zeroing_it_where_attention_ignores_the_query() {
    use crate::engine::reference::{Depth, EqRoutes, Params64};
    let w = random_model(Arch::Li2024, 11, 16, 4, 32, 5);
    let p = w.modulus();
    // At attention rate 0 the query is not read, so cutting x_= from its residual
    // and value routes is the same model as E_= = 0 (here computed by training's pass).
    let m = at_rate(&w, 0.0);
    let w64 = Params64::from_weights(&w);
    let pairs = measures::all_pairs(p);
    let none = EqRoutes {
        residual: false,
        value: false,
    };
    let cut = forward::read_out(&m, &w64)
        .position_two_routed(&pairs, Depth::Logits, none)
        .rows
        .logits;
    let mut zeroed = w.clone();
    zeroed.w_e.row_mut(p).iter_mut().for_each(|v| *v = 0.0);
    let want = forward::logits(&at_rate(&zeroed, 0.0));
    for (got, want) in cut.iter().zip(&want) {
        assert!((got - *want as f64).abs() < 1e-5, "{got} vs {want}");
    }
    // Each route of the random model matters; a model whose E_= is 0 loses nothing.
    let e = mechanism::eq_route_ablation(&at_rate(&w, 1.0));
    assert!(e.residual_loss_increase.abs() > 1e-6 && e.value_loss_increase.abs() > 1e-6);
    let e0 = mechanism::eq_route_ablation(&at_rate(&zeroed, 1.0));
    assert_eq!(
        (e0.residual_loss_increase, e0.value_loss_increase),
        (0.0, 0.0)
    );
}

#[test]
fn elasticities_are_the_reference_gradient_along_w_q_and_e_eq() {
    use crate::engine::reference::{loss_and_grads, Params64};
    // d L / d ln s with W_Q → s·W_Q is ⟨W_Q, ∂L/∂W_Q⟩: the reference backward pass
    // (itself checked against finite differences) computes it independently of the
    // read-out pass the measure differences.
    for (arch, rate) in [
        (Arch::Li2024, 1.0),
        (Arch::Nanda2023, 1.0),
        (Arch::Li2024, 0.5),
    ] {
        let mut w = random_model(arch, 11, 16, 4, 32, 5);
        w.w_q.data.iter_mut().for_each(|v| *v *= 3.0);
        let m = at_rate(&w, rate);
        let pairs: Vec<(usize, usize)> = measures::all_pairs(11).into_iter().step_by(3).collect();
        let as_u32: Vec<(u32, u32)> = pairs.iter().map(|&(a, b)| (a as u32, b as u32)).collect();
        let w64 = Params64::from_weights(&w);
        let (loss, _, grads) = loss_and_grads(&w64, &as_u32, 0, m.act_eps, m.attention, true);
        let slope: f64 = grads
            .unwrap()
            .w_q
            .data
            .iter()
            .zip(&w64.w_q.data)
            .map(|(g, x)| g * x)
            .sum();
        let both = mechanism::elasticities(&m, &pairs);
        let got = both.score;
        let want = slope / loss;
        // Scaling E_= on every route: ⟨E_=, ∂L/∂E_=⟩ / L.
        let g = grads_eq(&w64, &as_u32, &m);
        let eq_row = w64.w_e.row(11).to_vec();
        let eq_want = g.iter().zip(&eq_row).map(|(g, x)| g * x).sum::<f64>() / loss;
        let eq_got = both.eq;
        assert!(eq_want.abs() > 1e-3, "{arch} {rate}: E_= matters");
        assert!(
            (eq_got - eq_want).abs() <= 1e-6 * eq_want.abs().max(1.0),
            "{arch} {rate}: E_= elasticity {eq_got} vs reference gradient {eq_want}"
        );
        assert!(
            want.abs() > 1e-3,
            "{arch} {rate}: the random model's scores matter"
        );
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{arch} {rate}: elasticity {got} vs reference gradient {want}"
        );
    }
    // Every score 0: scaling changes nothing, exactly.
    let mut flat = random_model(Arch::Li2024, 11, 16, 4, 32, 5);
    flat.w_q.data.iter_mut().for_each(|v| *v = 0.0);
    let pairs = measures::all_pairs(11);
    assert_eq!(
        mechanism::elasticities(&at_rate(&flat, 1.0), &pairs).score,
        0.0
    );
}

/// The reference gradient of the loss on `pairs` with respect to the `=` row of W_E.
fn grads_eq(w64: &crate::engine::reference::Params64, pairs: &[(u32, u32)], m: &Model) -> Vec<f64> {
    let (_, _, g) =
        crate::engine::reference::loss_and_grads(w64, pairs, 0, m.act_eps, m.attention, true);
    let g = g.unwrap();
    let p = w64.modulus();
    g.w_e.data[p * g.w_e.cols..(p + 1) * g.w_e.cols].to_vec()
}
