//! Sweep files: the examples expand as documented, and every file of the
//! bad corpus is refused with the line, column and field its first line
//! expects.

use std::path::PathBuf;

use coordinator::spec;
use proto::metrics::Metric;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_example_sweeps_expand_into_their_trials() {
    let quick =
        spec::parse(&std::fs::read_to_string(repo().join("sweeps/quickstart.yaml")).unwrap())
            .unwrap();
    assert_eq!(quick.trials.len(), 4);
    let keys: std::collections::BTreeSet<_> =
        quick.trials.iter().map(|t| t.config_key.as_str()).collect();
    assert_eq!(keys.len(), 2);
    let seeds: Vec<_> = quick
        .trials
        .iter()
        .map(|t| (t.repeat, t.config.seed))
        .collect();
    assert_eq!(seeds, [(0, 0), (1, 1), (0, 0), (1, 1)]);
    assert!(quick.trials.iter().all(|t| t.config.epochs == 20));
    let smart = quick
        .trials
        .iter()
        .find(|t| t.config_key.contains("gen_init=smart"))
        .unwrap();
    assert!(smart.config.glob_relu, "smart init implies the glob ReLU");

    let study =
        spec::parse(&std::fs::read_to_string(repo().join("sweeps/exp025-init.yaml")).unwrap())
            .unwrap();
    assert_eq!(study.trials.len(), 12);
    assert!(
        study
            .trials
            .iter()
            .all(|t| t.config.epochs == 300 && t.config.batch_size == 4 && t.config.lr == 1e-4)
    );
    assert_eq!(study.objective.metric, Metric::BoardAccuracy);
    assert_eq!((study.method, study.budget), (spec::Method::Grid, 4));
    assert!(study.early_stopping.is_none() && study.search.is_none());
    assert_eq!(study.stop_epochs, [100, 200, 300]);
    assert!(quick.stop_epochs.is_empty());

    let search =
        spec::parse(&std::fs::read_to_string(repo().join("sweeps/lr-search.yaml")).unwrap())
            .unwrap();
    assert_eq!((search.method, search.budget), (spec::Method::Bayes, 24));
    assert!(
        search.trials.is_empty(),
        "a bayes search proposes as it goes"
    );
    let s = search.search.as_ref().unwrap();
    assert_eq!((s.startup, s.parallel), (8, 2));
    let rule = search.early_stopping.unwrap();
    assert_eq!(coordinator::early_stopping::rungs(&rule, 100), [10, 30, 90]);
    assert_eq!(rule.min_repeats, 0, "all repeats by default");
}

const BAYES: &str = "name: b\nmethod: bayes\nbudget: 30\nstartup: 4\nsearch_seed: 3\nrepeats: 2\n\
                     dataset: {generated: {seed: 1, train: 8, test: 4}}\n\
                     parameters:\n  lr: {distribution: log_uniform, min: 0.00001, max: 0.01}\n\
                     \x20 batch_size: {distribution: int_uniform, min: 2, max: 8}\n\
                     \x20 init: {values: [default, smart]}\n";

/// A stand-in objective with its optimum at lr 1e-3, batch size 4, smart.
fn objective(c: &proto::v1::TrialConfig) -> f64 {
    let smart = spec::config_key(c).contains("gen_init=smart");
    -(c.lr.log10() + 3.0).powi(2) - 0.1 * (f64::from(c.batch_size) - 4.0).powi(2)
        + if smart { 0.5 } else { 0.0 }
}

#[test]
fn a_bayes_search_proposes_reproducibly_from_its_history_and_never_repeats_itself() {
    let plan = spec::parse(BAYES).unwrap();
    let search = plan.search.unwrap();
    let mut taken = std::collections::HashSet::new();
    let mut history = Vec::new();
    let mut by = Vec::new();
    for proposal in 1..=12 {
        let trials = search.propose(&history, &taken, proposal).unwrap();
        assert_eq!(trials.len(), 2, "one trial per repeat");
        assert_eq!(
            trials,
            search.propose(&history, &taken, proposal).unwrap(),
            "the same history gives the same proposal"
        );
        assert!(trials.iter().all(|t| t.proposal == proposal));
        assert_eq!(
            trials
                .iter()
                .map(|t| (t.repeat, t.config.seed))
                .collect::<Vec<_>>(),
            [(0, 0), (1, 1)]
        );
        let c = &trials[0].config;
        assert!((1e-5..=1e-2).contains(&c.lr) && (2..=8).contains(&c.batch_size));
        assert!(
            taken.insert(trials[0].config_key.clone()),
            "never a configuration twice"
        );
        by.push(trials[0].proposed_by);
        history.push(spec::Observation {
            config: c.clone(),
            value: objective(c),
        });
    }
    assert_eq!(
        by[..4],
        ["random"; 4],
        "the start-up configurations are random"
    );
    assert!(by[4..].iter().all(|b| *b == "tpe"));
}

#[test]
fn a_search_that_has_tried_everything_says_so() {
    let yaml = "name: b\nmethod: bayes\nbudget: 5\n\
                dataset: {generated: {seed: 1, train: 8, test: 4}}\n\
                parameters: {init: {values: [default, smart]}}\n";
    let search = spec::parse(yaml).unwrap().search.unwrap();
    let mut taken = std::collections::HashSet::new();
    for proposal in 1..=2 {
        let trials = search.propose(&[], &taken, proposal).unwrap();
        taken.insert(trials[0].config_key.clone());
    }
    assert_eq!(search.propose(&[], &taken, 3), None);
}

#[test]
fn random_search_draws_its_budget_reproducibly_within_bounds() {
    let yaml = "name: r\nmethod: random\nbudget: 20\nsearch_seed: 7\nrepeats: 2\n\
                dataset: {generated: {seed: 1, train: 8, test: 4}}\n\
                parameters:\n  lr: {distribution: log_uniform, min: 0.00001, max: 0.001}\n\
                \x20 batch_size: {distribution: int_uniform, min: 2, max: 8}\n\
                \x20 beta1: {distribution: uniform, min: 0.5, max: 0.9}\n\
                \x20 init: {values: [default, smart]}\n";
    let a = spec::parse(yaml).unwrap();
    assert_eq!(a.trials.len(), 40);
    assert_eq!(a, spec::parse(yaml).unwrap());
    for t in &a.trials {
        let c = &t.config;
        assert!(
            (1e-5..=1e-3).contains(&c.lr)
                && (2..=8).contains(&c.batch_size)
                && (0.5..=0.9).contains(&c.beta1)
        );
    }
    let other = spec::parse(&yaml.replace("search_seed: 7", "search_seed: 8")).unwrap();
    assert_ne!(a, other);
}

#[test]
fn every_bad_sweep_is_refused_with_its_location() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_sweeps");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "a corpus of at least 20 bad files");
    let mut wrong = Vec::new();
    for file in files {
        let yaml = std::fs::read_to_string(&file).unwrap();
        let expect = yaml
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .expect("an expectation line");
        match spec::parse(&yaml) {
            Ok(_) => wrong.push(format!("{}: accepted", file.display())),
            Err(err) if !err.to_string().contains(expect) || err.line == 0 || err.column == 0 => {
                wrong.push(format!(
                    "{}:\n  got:  {err}\n  want: {expect}",
                    file.display()
                ));
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_oversized_file_and_a_huge_grid_are_refused_before_any_work() {
    let padding = format!("# {}\n", "x".repeat(1 << 20));
    let big = format!(
        "{padding}name: a\ndataset: {{generated: {{seed: 1, train: 8, test: 4}}}}\nparameters: {{}}\n"
    );
    let err = spec::parse(&big).unwrap_err();
    assert_eq!((err.line, err.column), (1, 1));
    assert!(err.message.contains("at most 1048576 are allowed"), "{err}");

    // 5,000,000 trials: refused from the counts, without expanding them.
    let err = spec::parse(&coordinator::testing::five_million_trials_yaml()).unwrap_err();
    assert!(err.message.contains("expands to 5000000 trials"), "{err}");
}

#[test]
fn metric_precision_is_float64_unless_the_file_asks_for_float32() {
    let base = "name: a\ndataset: {generated: {seed: 1, train: 8, test: 4}}\nparameters: {}\n";
    assert_eq!(
        spec::parse(base).unwrap().precision,
        spec::Precision::Float64
    );
    for (name, want) in [
        ("float64", spec::Precision::Float64),
        ("float32", spec::Precision::Float32),
    ] {
        let yaml = format!("{base}metric_precision: {name}\n");
        assert_eq!(spec::parse(&yaml).unwrap().precision, want);
    }

    // float32: the nearest 32-bit float, ties to even; every NaN the one
    // NaN; past the 32-bit range, infinite.
    let rounded = spec::Precision::Float32;
    assert_eq!(rounded.round(0.1), f64::from(0.1f32));
    assert_ne!(rounded.round(0.1), 0.1);
    assert_eq!(rounded.round(16_777_217.0), 16_777_216.0);
    assert_eq!(rounded.round(16_777_219.0), 16_777_220.0);
    assert_eq!(rounded.round(-0.0).to_bits(), (-0.0f64).to_bits());
    let odd_nan = f64::from_bits(0xfff8_0000_0000_0001);
    assert_eq!(rounded.round(odd_nan).to_bits(), f64::NAN.to_bits());
    assert_eq!(rounded.round(1e39), f64::INFINITY);
    let exact = spec::Precision::Float64;
    assert_eq!(exact.round(odd_nan).to_bits(), odd_nan.to_bits());
    assert_eq!(exact.round(0.1), 0.1);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 14] = [
        "name",
        "description",
        "method",
        "budget",
        "search_seed",
        "seed",
        "repeats",
        "metric",
        "dataset",
        "parameters",
        "lr",
        "init",
        "epochs",
        "bogus",
    ];
    const VALUES: [&str; 16] = [
        "a",
        "0",
        "-1",
        "1e400",
        ".nan",
        "~",
        "[]",
        "{}",
        "[1, 2]",
        "grid",
        "random",
        "{generated: {seed: 1, train: 8, test: 4}}",
        "{lr: {values: [0.1, 0.2]}}",
        "{init: {value: smart}, glob_relu: {value: false}}",
        "{name: board_accuracy}",
        "'\\u0000'",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text at all: a plan, or an error with a field and a message;
        /// never a panic.
        #[test]
        fn any_text_is_planned_or_refused(text in "(?s).{0,300}") {
            match spec::parse(&text) {
                Ok(plan) => prop_assert!(!plan.trials.is_empty()),
                Err(e) => prop_assert!(!e.field.is_empty() && !e.message.is_empty()),
            }
        }

        /// Documents shaped like sweep files, with keys and values mixed at
        /// random: planned within the bounds, or refused with a location.
        #[test]
        fn sweep_shaped_documents_are_planned_or_located(
            pairs in proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..10),
        ) {
            let yaml: String = pairs
                .iter()
                .map(|&(k, v)| format!("{}: {}\n", KEYS[k], VALUES[v]))
                .collect();
            match spec::parse(&yaml) {
                Ok(plan) => prop_assert!(
                    !plan.trials.is_empty() && plan.trials.len() as u64 <= coordinator::limits::MAX_TRIALS
                ),
                Err(e) => prop_assert!(e.line > 0 && e.column > 0, "{e} in\n{yaml}"),
            }
        }
    }
}
