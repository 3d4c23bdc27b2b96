//! Helpers shared by the integration tests that need NVRTC.

use charlm_trainer::cuda::nvrtc;

/// Whether libnvrtc loads. Under CI=true a missing libnvrtc fails the
/// calling test; elsewhere the test is skipped with a loud message.
pub fn have_nvrtc() -> bool {
    if nvrtc::available() {
        return true;
    }
    assert!(
        !ci(),
        "CI=true but libnvrtc cannot be loaded: run scripts/install-nvrtc.sh and put the folder it prints on LD_LIBRARY_PATH"
    );
    eprintln!(
        "\n*** SKIPPED: libnvrtc not found; the CUDA kernels were NOT compiled.\n\
         *** export LD_LIBRARY_PATH=\"$(bash scripts/install-nvrtc.sh):$LD_LIBRARY_PATH\" to run this test.\n"
    );
    false
}

/// Whether this is a CI run (`CI=true` or `CI=1`): there a check that
/// cannot run fails instead of being skipped.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
