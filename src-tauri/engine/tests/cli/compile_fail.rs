//! Invalid lifecycle transitions do not compile (cases in tests/ui/).

#[test]
fn invalid_transitions_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
