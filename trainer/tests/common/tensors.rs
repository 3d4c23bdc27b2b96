//! Comparing two model files tensor by tensor (integration tests that
//! include it with `#[path]`).

use std::path::Path;

use charlm_runtime::format::ModelFile;

/// Asserts that model files `a` and `b` have the same architecture,
/// vocabulary and every tensor's bytes (their provenance may differ).
pub fn assert_same_model(a: &Path, b: &Path) {
    let (a_bytes, b_bytes) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (x, y) = (
        ModelFile::decode(&a_bytes).unwrap(),
        ModelFile::decode(&b_bytes).unwrap(),
    );
    let what = format!("{} and {}", a.display(), b.display());
    assert_eq!(x.body.arch, y.body.arch, "{what}");
    assert_eq!(x.body.vocab, y.body.vocab, "{what}");
    for ((n, tx), (_, ty)) in x.body.tensors().zip(y.body.tensors()) {
        assert!(tx == ty, "{what}: {n} differs");
    }
}
