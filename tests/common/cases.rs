//! A table of test cases: one `#[test]` per row, each calling the same function
//! with its row's arguments, instead of a wrapper function written out per case.
//!
//! ```text
//! crate::test_cases!(full_sidecar_path {
//!     /// Doc comments and attributes stay with their case.
//!     a_call_crosses_both_sidecars_ipv4: (Family::V4, Mesh::Istio);
//! });
//! ```

#[macro_export]
macro_rules! test_cases {
    ($run:path { $($(#[$meta:meta])* $name:ident: ($($arg:expr),* $(,)?);)* }) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                $run($($arg),*);
            }
        )*
    };
}
