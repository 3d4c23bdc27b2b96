//! f32 parameters to a `.clm` file, through the runtime's own format types.
//!
//! Each f32 is rounded to the nearest f16 (ties to even, `half`). The
//! parameter layout already stores layer 0's input weights as the runtime's
//! `[V, G*H]` table, so every tensor is written as it is; vectors become
//! `[n, 1]`.

use charlm_runtime::format::{
    Body, DType, Header, LayerRecord, Meta, ModelFile, Tensor, VocabRecord,
};

use crate::error::CliError;
use crate::params::Layout;
use crate::vocab::Vocab;

/// What the file records about where the model came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    /// Corpus name.
    pub corpus: String,
    /// Optimizer steps.
    pub steps: u64,
    /// Training bits per character (f32 weights).
    pub train_bpc: Option<f32>,
    /// Held-out bits per character (f32 weights).
    pub val_bpc: Option<f32>,
    /// Held-out bits per character after rounding to f16 (through the runtime).
    pub val_bpc_f16: Option<f32>,
}

/// Little-endian f16 bytes of `x`, or the index of a value too large for f16.
pub fn to_f16_bytes(x: &[f32]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(x.len() * 2);
    for (i, &v) in x.iter().enumerate() {
        let h = half::f16::from_f32(v);
        if !h.is_finite() {
            return Err(i);
        }
        out.extend_from_slice(&h.to_le_bytes());
    }
    Ok(out)
}

/// Encodes a model file (with checksum).
pub fn export(
    layout: &Layout,
    params: &[f32],
    vocab: &Vocab,
    prov: &Provenance,
) -> Result<Vec<u8>, CliError> {
    assert_eq!(params.len(), layout.len);
    assert_eq!(vocab.size(), layout.arch.vocab as usize);
    let mut data = Vec::with_capacity(layout.slots.len());
    for slot in &layout.slots {
        let bytes = to_f16_bytes(&params[slot.range.clone()]).map_err(|i| {
            CliError::invalid(format!(
                "cannot export: {}[{i}] = {} does not fit in f16 (training diverged; try a lower --lr or --clip)",
                slot.name,
                params[slot.range.start + i]
            ))
        })?;
        data.push(bytes);
    }
    let tensor = |i: usize| {
        let [r, c] = layout.slots[i].shape;
        Tensor {
            dtype: DType::F16,
            shape: [r as u32, c as u32],
            data: &data[i],
        }
    };
    let layers = (0..layout.arch.layers as usize)
        .map(|l| LayerRecord {
            w_ih: tensor(4 * l),
            w_hh: tensor(4 * l + 1),
            b_ih: tensor(4 * l + 2),
            b_hh: tensor(4 * l + 3),
        })
        .collect();
    let n = layout.slots.len();
    let symbols = vocab.symbols_string();
    let file = ModelFile {
        header: Header::CURRENT,
        body: Body {
            arch: layout.arch,
            vocab: VocabRecord {
                symbols: symbols.as_bytes(),
                pad: 0,
                eos: vocab.eos(),
            },
            layers,
            out_w: tensor(n - 2),
            out_b: tensor(n - 1),
            meta: Meta {
                corpus: &prov.corpus,
                steps: prov.steps,
                train_bpc: prov.train_bpc,
                val_bpc: prov.val_bpc,
                val_bpc_f16: prov.val_bpc_f16,
            },
        },
    };
    file.encode()
        .map_err(|e| CliError::invalid(format!("cannot encode the model: {e}")))
}

/// A model file made from a run's checkpoint (see [`from_checkpoint`]).
#[derive(Debug)]
pub struct Snapshot {
    /// The `.clm` bytes.
    pub bytes: Vec<u8>,
    /// What they hold.
    pub arch: charlm_runtime::format::Arch,
    /// Where the run stood: steps, epoch, losses, whether it had finished.
    pub progress: crate::checkpoint::Progress,
    /// The epochs the run was set to train.
    pub epochs: u64,
}

/// The model in the checkpoint of run folder `dir`, as `charlm train`
/// would export it at that point: a run still going or one stopped before
/// its end gets a model file too. The held-out score after rounding to f16
/// is left out (it needs the corpus; `charlm eval` computes it).
pub fn from_checkpoint(dir: &std::path::Path) -> Result<Snapshot, CliError> {
    let ck = crate::checkpoint::Checkpoint::load(dir)?;
    ck.config.validate()?;
    let vocab = Vocab::from_symbols(ck.vocab.chars().collect());
    let layout = Layout::new(ck.config.arch(vocab.size()));
    ck.fits(&layout)?;
    let prov = Provenance {
        corpus: ck.config.corpus.name(),
        steps: ck.progress.steps,
        train_bpc: ck.progress.train_bpc,
        val_bpc: ck.progress.val_bpc,
        val_bpc_f16: None,
    };
    Ok(Snapshot {
        bytes: export(&layout, &ck.params, &vocab, &prov)?,
        arch: layout.arch,
        progress: ck.progress,
        epochs: ck.config.epochs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use charlm_runtime::Model;
    use charlm_runtime::format::{Arch, CellKind};

    #[test]
    fn the_runtime_accepts_an_export_and_sees_the_same_weights() {
        let vocab = Vocab::fit(["hello, wörld"]).unwrap();
        let arch = Arch {
            cell: CellKind::Gru,
            layers: 2,
            hidden: 8,
            vocab: vocab.size() as u16,
        };
        let layout = Layout::new(arch);
        let params = layout.init(1);
        let prov = Provenance {
            corpus: "x".into(),
            steps: 7,
            val_bpc: Some(2.5),
            ..Default::default()
        };
        let bytes = export(&layout, &params, &vocab, &prov).unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        assert_eq!(*model.arch(), arch);
        assert_eq!(model.vocab().symbols(), vocab.symbols_string());
        assert_eq!(model.meta().steps, 7);
        assert_eq!(model.meta().val_bpc, Some(2.5));
        let file = ModelFile::decode(&bytes).unwrap();
        // Layer 0's table row 3 is what the layout stores there, rounded.
        let g = 3 * 8;
        let row3 = &file.body.layers[0].w_ih.data[3 * g * 2..4 * g * 2];
        assert_eq!(row3, to_f16_bytes(&params[3 * g..4 * g]).unwrap());
    }

    #[test]
    fn values_beyond_f16_are_an_error() {
        assert_eq!(to_f16_bytes(&[1.0, 70000.0]), Err(1));
        assert_eq!(to_f16_bytes(&[65504.0]).unwrap(), [0xff, 0x7b]);
    }
}
