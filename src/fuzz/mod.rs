//! Property tests ("fuzzing" with proptest; cargo-fuzz needs a nightly toolchain) of
//! every parser that reads input meshlane does not control: CNI stdin and meshlane's
//! own keys, `prevResult`, Istio's annotations, the kubeconfig and the API server's
//! Pod JSON. The properties: no input panics, every error names its culprit with the
//! right CNI code, valid inputs round-trip. Inputs that once failed stay as plain
//! `#[test]` regression cases next to the property. docs/reliability.md ("Fuzzed
//! input") gives the case counts and run times.

mod annotations;
mod cni_stdin;
mod json;
mod kubeconfig;
mod pod_json;
mod prev_result;

use proptest::test_runner::Config;

/// Cases per property: each target (file) stays within a few seconds of a debug
/// build on a 2-core machine, far inside CI's 60 s per target. MESHLANE_FUZZ_CASES
/// raises it for a longer run by hand.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("MESHLANE_FUZZ_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        // Regressions are kept as named #[test] cases, not in files the run writes.
        failure_persistence: None,
        ..Config::default()
    }
}
