//! Compile-pass and compile-fail cases of the derive, grouped by error kind (as serde's
//! test_suite). Regenerate the expected output with `TRYBUILD=overwrite` after a deliberate
//! change of a message, and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*/*.rs");
}
