//! Compile-time checks of `#[derive(OutboxEvent)]`: each `ui/dNN-*.rs` must fail with the error in its `.stderr`
//! (the cases of `DERIVE.md`), each `ui/pNN-*.rs` must compile and run.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/d*.rs");
    t.pass("tests/ui/p*.rs");
}
