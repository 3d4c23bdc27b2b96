//! The run's metrics: `metrics.csv` and a loss-curve plot (`loss.svg`).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::error::CliError;

/// One line of `metrics.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Optimizer steps so far.
    pub step: u64,
    /// Epoch (1-based; fractional inside an epoch).
    pub epoch: f64,
    /// Learning rate in use.
    pub lr: f32,
    /// Training bits per character since the previous row.
    pub train_bpc: f64,
    /// Held-out bits per character (end of epoch rows only).
    pub val_bpc: Option<f64>,
    /// Training characters per second since the previous row.
    pub chars_per_s: f64,
    /// Seconds of training so far.
    pub seconds: f64,
}

/// `metrics.csv` as text.
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from("step,epoch,lr,train_bpc,val_bpc,chars_per_s,seconds\n");
    for r in rows {
        let val = r.val_bpc.map_or(String::new(), |v| format!("{v:.5}"));
        // The rate to f32's 7 significant digits, written as briefly as
        // they allow: a decayed 2.7e-3 is "2.7e-3", not its f32 value's
        // exact "2.6999998e-3".
        let lr: f64 = format!("{:.6e}", r.lr).parse().unwrap_or(f64::from(r.lr));
        let _ = writeln!(
            s,
            "{},{:.4},{lr:e},{:.5},{val},{:.0},{:.2}",
            r.step, r.epoch, r.train_bpc, r.chars_per_s, r.seconds
        );
    }
    s
}

/// Where a `metrics.csv` (its text) and a run's rows tell of different
/// runs: the 1-based line of the first data row whose step or training
/// score differs from the row the run has at that place, compared as far as
/// both go (a file may be a row ahead of its checkpoint, or behind it where
/// a save was cut short). The other columns are left out: the rate's and
/// the timings' formats have changed between versions, and a step with its
/// score to 5 decimals already tells one run from another.
pub fn disagreement(file: &str, rows: &[Row]) -> Option<usize> {
    let ours = csv(rows);
    fn key(line: &str) -> (Option<&str>, Option<&str>) {
        let mut f = line.split(',');
        (f.next(), f.nth(2))
    }
    file.lines()
        .zip(ours.lines())
        .enumerate()
        .skip(1)
        .find(|(_, (theirs, ours))| key(theirs) != key(ours))
        .map(|(i, _)| i + 1)
}

/// Writes `metrics.csv` and `loss.svg` into `dir`.
pub fn write(dir: &Path, rows: &[Row]) -> Result<(), CliError> {
    write_atomic(&dir.join("metrics.csv"), csv(rows).as_bytes())?;
    let svg =
        plot(rows).map_err(|e| CliError::invalid(format!("cannot draw the loss curve: {e}")))?;
    write_atomic(&dir.join("loss.svg"), svg.as_bytes())
}

/// The loss curve: training bits per character per logged interval, and the
/// held-out value after each epoch, against steps.
pub fn plot(rows: &[Row]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
        let values = rows
            .iter()
            .flat_map(|r| std::iter::once(r.train_bpc).chain(r.val_bpc));
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            (lo * 0.95, hi * 1.05)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption("charlm: bits per character", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max_step, lo..hi.max(lo + 1e-3))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("bits per character")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.step as f64, r.train_bpc)),
                &BLUE,
            ))?
            .label("training")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        let val: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((r.step as f64, r.val_bpc?)))
            .collect();
        chart
            .draw_series(LineSeries::new(val.clone(), &RED))?
            .label("held-out")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart.draw_series(val.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_plot() {
        let rows = vec![
            Row {
                step: 10,
                epoch: 0.5,
                lr: 1e-3,
                train_bpc: 3.0,
                val_bpc: None,
                chars_per_s: 1e5,
                seconds: 1.0,
            },
            Row {
                step: 20,
                epoch: 1.0,
                lr: 1e-3,
                train_bpc: 2.5,
                val_bpc: Some(2.6),
                chars_per_s: 1e5,
                seconds: 2.0,
            },
        ];
        let text = csv(&rows);
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.lines()
                .nth(2)
                .unwrap()
                .starts_with("20,1.0000,1e-3,2.50000,2.60000,")
        );
        let svg = plot(&rows).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("held-out"));
    }

    #[test]
    fn a_file_and_rows_disagree_only_where_steps_or_scores_differ() {
        let row = |step, train_bpc| Row {
            step,
            epoch: 0.1,
            lr: 2.7e-3,
            train_bpc,
            val_bpc: None,
            chars_per_s: 1.0,
            seconds: 1.0,
        };
        let rows = [row(10, 3.0), row(20, 2.5)];
        let file = csv(&rows);
        // The file a row ahead or behind; an older version's rate format
        // and other timings.
        assert_eq!(disagreement(&file, &rows[..1]), None);
        assert_eq!(disagreement(&csv(&rows[..1]), &rows), None);
        let older = "step,epoch,lr,train_bpc,val_bpc,chars_per_s,seconds\n\
                     10,0.1000,2.6999998e-3,3.00000,,9,7.00\n\
                     20,0.1000,2.6999998e-3,2.50000,,9,8.00\n";
        assert_ne!(older, file);
        assert_eq!(disagreement(older, &rows), None);
        assert_eq!(disagreement(&file, &[]), None);
        assert_eq!(
            disagreement(&file, &[row(10, 3.0), row(20, 2.50001)]),
            Some(3)
        );
        assert_eq!(disagreement(&file, &[row(11, 3.0)]), Some(2));
        assert_eq!(disagreement("", &rows), None);
    }

    #[test]
    fn a_decayed_rate_is_written_to_the_digits_f32_holds() {
        let decayed = 3e-3f32 * 0.9;
        assert_eq!(format!("{decayed:e}"), "2.6999998e-3");
        let row = |lr| Row {
            step: 1,
            epoch: 0.1,
            lr,
            train_bpc: 3.0,
            val_bpc: None,
            chars_per_s: 1.0,
            seconds: 1.0,
        };
        let text = csv(&[row(decayed), row(1.234_567_8e-7)]);
        let rates: Vec<_> = text.lines().skip(1).map(|l| l.split(',').nth(2)).collect();
        assert_eq!(rates, [Some("2.7e-3"), Some("1.234568e-7")]);
    }
}
