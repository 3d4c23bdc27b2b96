//! Rewrites the synthetic fixture models, their PyTorch input files and the
//! golden outputs: `cargo run -p charlm-tests --bin make-fixtures`.
//! Run it only when the format or the numerics change on purpose; then
//! re-run `tests/reference/torch_forward.py` and review the diff.

use std::fs;

use charlm_trainer::export::quantize_file;

use charlm_tests::{
    QUANTIZED, SPECS, TEMPERATURES, Weights, digest_path, generate_args, golden_models,
    golden_path, golden_text, logits_digest, model_path, tests_dir,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    fs::create_dir_all(tests_dir().join("fixtures"))?;
    fs::create_dir_all(tests_dir().join("golden"))?;
    // One line per golden file: its name, then the `charlm generate`
    // arguments (tab-separated, paths relative to the repository root)
    // whose standard output it is.
    let mut cases = String::new();
    for spec in &SPECS {
        let weights = Weights::synthesize(spec);
        let bytes = weights.encode(spec.symbols, "synthetic (seeded PCG32)");
        fs::write(model_path(spec.name), &bytes)?;
        let json = weights.torch_json(spec.symbols);
        let json_path = tests_dir()
            .join("fixtures")
            .join(format!("{}.torch_in.json", spec.name));
        fs::write(&json_path, serde_json::to_string(&json)?)?;
        println!(
            "wrote {} ({} bytes)",
            model_path(spec.name).display(),
            bytes.len()
        );
    }
    for (name, from) in QUANTIZED {
        let bytes = quantize_file(&fs::read(model_path(from))?)?;
        fs::write(model_path(name), &bytes)?;
        println!(
            "wrote {} ({} bytes)",
            model_path(name).display(),
            bytes.len()
        );
    }
    let root = tests_dir().join("..").canonicalize()?;
    let relative = |a: String| a.replace(&format!("{}/", root.display()), "");
    for name in golden_models() {
        let bytes = fs::read(model_path(name))?;
        for t in TEMPERATURES {
            let path = golden_path(name, t);
            fs::write(&path, golden_text(&bytes, t)?)?;
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let args: Vec<String> = generate_args(name, t).into_iter().map(relative).collect();
            cases.push_str(&format!("{file}\t{}\n", args.join("\t")));
        }
        fs::write(digest_path(name), logits_digest(&bytes)?)?;
        println!("wrote the golden outputs of {name}");
    }
    fs::write(tests_dir().join("golden").join("cases.tsv"), cases)?;
    Ok(())
}
