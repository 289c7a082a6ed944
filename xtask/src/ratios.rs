//! `cargo xtask bench-ratios [--baselines a,b,c] [--ours NAME] [FILTER...]`: our median against each peer's,
//! read back from criterion's `target/criterion/<group>/<implementation>/<parameter>/<baseline>/estimates.json`.
//!
//! In every group the implementation called `veridian` (or the one `--ours` names) is ours; every other implementation with
//! the same parameter is a peer (including our own variants, e.g. `veridian_pinned_pair`). For
//! each pair it prints both medians and the ratio ours / peer (below 1.0: we are faster).
//!
//! With `--baselines run1,run2,run3` (criterion runs saved with `--save-baseline runN`) it prints
//! the ratio of each run and their spread (min..max, and the half-range as a percentage of the
//! middle), so that a table quotes several runs, not one. Without it the latest run (`new`) is
//! read. `FILTER` words keep the ids that contain one of them (e.g. `spsc_ring larson`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use crate::error::{Error, Result};
use crate::pgo::medians;
use crate::workspace;

/// The implementation that is ours unless `--ours` names another (e.g. `veridian_read`).
pub const OURS: &str = "veridian";

/// `group/implementation/parameter` split at the implementation.
fn split(id: &str) -> Option<(String, &str, String)> {
    let mut parts = id.split('/');
    let group = parts.next()?;
    let implementation = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    Some((group.to_owned(), implementation, rest.join("/")))
}

/// One line of the table: `(group/parameter, peer) -> per-run (ours, peer)` medians.
type Pairs = BTreeMap<(String, String), Vec<Option<(f64, f64)>>>;

/// Pairs up ours and each peer per group/parameter, over the runs in `runs`.
pub fn pair_up(runs: &[BTreeMap<String, f64>], ours_name: &str, filters: &[String]) -> Pairs {
    let mut pairs = Pairs::new();
    for (r, medians) in runs.iter().enumerate() {
        for (id, &peer) in medians {
            if !filters.is_empty() && !filters.iter().any(|f| id.contains(f.as_str())) {
                continue;
            }
            let Some((group, implementation, param)) = split(id) else {
                continue;
            };
            if implementation == ours_name {
                continue;
            }
            let ours_id = if param.is_empty() {
                format!("{group}/{ours_name}")
            } else {
                format!("{group}/{ours_name}/{param}")
            };
            let Some(&ours) = medians.get(&ours_id) else {
                continue;
            };
            let key = (
                if param.is_empty() {
                    group
                } else {
                    format!("{group}/{param}")
                },
                implementation.to_owned(),
            );
            let row = pairs.entry(key).or_insert_with(|| vec![None; runs.len()]);
            row[r] = Some((ours, peer));
        }
    }
    pairs
}

/// `min..max ±p%` of the ratios present (p: half the range over the midpoint).
pub fn spread(ratios: &[f64]) -> Option<String> {
    let min = ratios.iter().copied().reduce(f64::min)?;
    let max = ratios.iter().copied().reduce(f64::max)?;
    let mid = (min + max) / 2.0;
    Some(format!(
        "{min:.2}..{max:.2} ±{:.0}%",
        100.0 * (max - min) / 2.0 / mid
    ))
}

/// Prints the table.
pub fn bench_ratios(baselines: &[String], ours: &str, filters: &[String]) -> Result<ExitCode> {
    let dir = workspace::target_dir().join("criterion");
    let names: Vec<String> = if baselines.is_empty() {
        vec!["new".to_owned()]
    } else {
        baselines.to_vec()
    };
    let runs: Vec<_> = names.iter().map(|b| medians(&dir, b)).collect();
    let pairs = pair_up(&runs, ours, filters);
    if pairs.is_empty() {
        return Err(Error::Failed(format!(
            "no group under {} has both `{ours}` and a peer measured (baselines: {})",
            workspace::display(&dir),
            names.join(", ")
        )));
    }
    println!(
        "{:<40} {:<28} {:>12} {:>12} {:>7}",
        "group/parameter", "peer", "ours (ns)", "peer (ns)", "ratio"
    );
    println!("(ours: `{ours}`)");
    for ((group, peer), row) in &pairs {
        let mut ratios = Vec::new();
        for (run, cell) in names.iter().zip(row) {
            let Some((ours, theirs)) = cell else {
                continue;
            };
            ratios.push(ours / theirs);
            let label = if names.len() > 1 {
                format!("{peer} [{run}]")
            } else {
                peer.clone()
            };
            println!(
                "{group:<40} {label:<28} {ours:>12.2} {theirs:>12.2} {:>7.3}",
                ours / theirs
            );
        }
        if names.len() > 1
            && let Some(s) = spread(&ratios)
        {
            println!(
                "{group:<40} {peer:<28} ratios over {} runs: {s}",
                ratios.len()
            );
        }
    }
    println!("(ratio = ours / peer, medians; below 1.0: ours is faster)");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_ours_with_each_peer_of_the_same_parameter() {
        let run: BTreeMap<String, f64> = [
            ("g/veridian/1", 10.0),
            ("g/peer/1", 20.0),
            ("g/peer/2", 5.0),
            ("h/peer/1", 1.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let pairs = pair_up(&[run], OURS, &[]);
        assert_eq!(pairs.len(), 1);
        assert_eq!(
            pairs[&("g/1".to_owned(), "peer".to_owned())],
            vec![Some((10.0, 20.0))]
        );
    }

    #[test]
    fn spread_is_min_max_and_half_range() {
        assert_eq!(spread(&[0.9, 1.1, 1.0]).as_deref(), Some("0.90..1.10 ±10%"));
        assert_eq!(spread(&[]), None);
    }
}
