//! `Model::from_bytes` on arbitrary bytes: it must return, never panic or
//! read out of bounds, and an accepted model must describe itself consistently.
#![no_main]

use charlm_runtime::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(model) = Model::from_bytes(bytes) {
        let vocab = model.vocab();
        assert_eq!(vocab.symbols().chars().count() + 2, vocab.size());
        assert_eq!(model.file_len(), bytes.len());
    }
});
