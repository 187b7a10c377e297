//! Misuse is a compile error spanned on the user's tokens. The expected
//! messages are checked in under `tests/ui/`; regenerate them with
//! `TRYBUILD=overwrite cargo test --test ui`.
//!
//! Runs on stable only: a nightly wording change must not fail users'
//! builds.

#[rustversion::attr(not(stable), ignore)]
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
