//! Finite-difference check of every gradient the CPU backend computes.
//!
//! The backend is generic over the float type; this test runs it in f64 so a
//! central difference is accurate to ~1e-10 and any mistake in the backward
//! pass (a missing term, a wrong gate, a mask not applied) shows up far above
//! the tolerance. Cases: LSTM and GRU, 2 layers, a padded batch; dropout
//! between the layers; and a window of running text that starts from a
//! carried state. Also in f64: a padded batch gives the loss and gradient
//! of its samples run one at a time (padding changes nothing).

use charlm_runtime::format::{Arch, CellKind};
use charlm_trainer::batch::Batch;
use charlm_trainer::cpu::{Cpu, Dropout};
use charlm_trainer::params::Layout;

const V: u16 = 7; // padding, 5 symbols, <eos> = 6

fn padded_batch() -> Batch {
    Batch::from_samples(&[&[1, 2, 3, 4, 5], &[5, 2], &[3, 1, 4], &[2]], V - 1)
}

fn running_batch(carry: bool) -> Batch {
    let (steps, rows) = (4, 2);
    let inputs: Vec<u16> = (0..steps * rows).map(|i| (i * 3 % 5 + 1) as u16).collect();
    let targets: Vec<u16> = (0..steps * rows).map(|i| (i * 2 % 5 + 1) as u16).collect();
    Batch {
        steps,
        rows,
        inputs,
        targets,
        carry,
    }
}

/// Central differences for every parameter, compared with the analytic gradient.
fn check(
    cell: CellKind,
    layers: u8,
    batch: &Batch,
    dropout: Option<Dropout>,
    warmup: Option<&Batch>,
) {
    let layout = Layout::new(Arch {
        cell,
        layers,
        hidden: 5,
        vocab: V,
    });
    let params: Vec<f64> = layout.init(11).iter().map(|&x| x as f64 * 3.0).collect();
    let mut cpu = Cpu::<f64>::new(layout.clone());
    if let Some(w) = warmup {
        cpu.loss(&params, w, charlm_trainer::cpu::Classes::All);
    }
    let (rows, state) = cpu.carried_state();
    let mut grads = vec![0.0; layout.len];
    let loss = cpu.loss_and_grad(&params, batch, &mut grads, dropout);
    assert!(loss.count > 0);
    if warmup.is_some() {
        // The state carried in from the warm-up batch was used: from a
        // zero state the same batch scores otherwise.
        let fresh =
            Cpu::<f64>::new(layout.clone()).loss(&params, batch, charlm_trainer::cpu::Classes::All);
        assert!(
            (fresh.mean() - loss.mean()).abs() > 1e-9,
            "the carried state changed nothing: {} both ways",
            loss.mean()
        );
    }
    let mut p = params.clone();
    let mut eval = |p: &[f64]| {
        cpu.set_carried_state(rows, state.clone());
        let mut g = vec![0.0; layout.len];
        let l = cpu.loss_and_grad(p, batch, &mut g, dropout);
        l.mean()
    };
    let eps = 1e-6;
    for slot in &layout.slots {
        let mut worst = 0.0f64;
        let mut largest = 0.0f64;
        for i in slot.range.clone() {
            let x = p[i];
            p[i] = x + eps;
            let up = eval(&p);
            p[i] = x - eps;
            let down = eval(&p);
            p[i] = x;
            let numeric = (up - down) / (2.0 * eps);
            let analytic = grads[i];
            // f64 rounding of a loss near 2 is ~4e-16, divided by 2e-6 -> ~2e-10;
            // the O(eps^2) truncation error is below that.
            let tol = 1e-8 + 1e-6 * numeric.abs();
            let err = (numeric - analytic).abs();
            assert!(
                err <= tol,
                "{cell:?} {}: element {} numeric {numeric:e} analytic {analytic:e}",
                slot.name,
                i - slot.range.start
            );
            worst = worst.max(err);
            largest = largest.max(numeric.abs());
        }
        // The check means something only if the gradient is not all zero.
        assert!(
            largest > 1e-4,
            "{cell:?} {}: gradient is ~0 ({largest:e})",
            slot.name
        );
        let _ = worst;
    }
}

#[test]
fn lstm_two_layers_padded_batch() {
    check(CellKind::Lstm, 2, &padded_batch(), None, None);
}

#[test]
fn gru_two_layers_padded_batch() {
    check(CellKind::Gru, 2, &padded_batch(), None, None);
}

#[test]
fn lstm_and_gru_with_dropout_between_layers() {
    let d = Some(Dropout { p: 0.4, seed: 5 });
    check(CellKind::Lstm, 3, &padded_batch(), d, None);
    check(CellKind::Gru, 2, &padded_batch(), d, None);
}

#[test]
fn lstm_and_gru_from_a_carried_state() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        check(
            cell,
            2,
            &running_batch(true),
            None,
            Some(&running_batch(false)),
        );
    }
}

/// Padding changes nothing: a padded batch's loss and gradient are those of
/// its samples run one at a time (no padding at all), each gradient of a
/// mean weighted by its sample's characters.
#[test]
fn a_padded_batch_is_its_samples_one_at_a_time() {
    let samples: [&[u16]; 4] = [&[1, 2, 3, 4, 5], &[5, 2], &[3, 1, 4], &[2]];
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let layout = Layout::new(Arch {
            cell,
            layers: 2,
            hidden: 5,
            vocab: V,
        });
        let params: Vec<f64> = layout.init(11).iter().map(|&x| x as f64 * 3.0).collect();
        let mut cpu = Cpu::<f64>::new(layout.clone());
        let mut grads = vec![0.0; layout.len];
        let batch = Batch::from_samples(&samples, V - 1);
        let all = cpu.loss_and_grad(&params, &batch, &mut grads, None);
        let (mut nats, mut count, mut sum) = (0.0, 0, vec![0.0; layout.len]);
        for s in samples {
            let mut g = vec![0.0; layout.len];
            let one = Batch::from_samples(&[s], V - 1);
            let l = cpu.loss_and_grad(&params, &one, &mut g, None);
            nats += l.nats;
            count += l.count;
            for (a, x) in sum.iter_mut().zip(&g) {
                *a += x * l.count as f64;
            }
        }
        assert_eq!(count, all.count, "{cell:?}: counted positions");
        assert!(
            (nats - all.nats).abs() <= 1e-12 * nats,
            "{cell:?}: {nats} nats one at a time, {} in one batch",
            all.nats
        );
        for (i, (a, g)) in sum.iter().zip(&grads).enumerate() {
            let b = g * all.count as f64;
            assert!(
                (a - b).abs() <= 1e-13 + 1e-10 * b.abs(),
                "{cell:?}: gradient {i}: {a} one at a time, {b} in one batch"
            );
        }
    }
}
