//! `agora bench adversary`: the adversarial market simulation of
//! [`agora_ledger::sim::adversary`] over many seeds, at 10%, 30% and 45% adversarial auditor
//! stake, with a validator that withholds its blocks to re-roll audits of cheated leases and
//! cheaters that also over-claim device time. It runs the real ledger in-process (no
//! network), so it is deterministic and cheap.
//!
//! For each setting it reports: honest providers slashed (the target is 0), cheaters' gain
//! over honest behaviour per cheated lease (the target is negative), the detection rate
//! against the audit probability the chain stated, penalties charged for failures a
//! withholding requester caused and what that requester gained (both must be 0), refuted
//! lazy and Sybil auditors, blocks withheld, what over-claimed device time gained the cheaters
//! (the target is at most 0) and how many over-claims were cut or paid, and whether supply was
//! conserved after every block.

use super::super::Global;
use super::super::output::print;
use agora_ledger::sim::adversary::{self, Report, Scenario};
use clap::Args;
use indicatif::ProgressBar;
use serde::Serialize;

/// `agora bench adversary` options.
#[derive(Debug, Args)]
pub struct AdversaryBenchArgs {
    /// Seeds per setting.
    #[arg(long, default_value_t = 20)]
    pub seeds: u32,
    /// Job rounds per seed (each of 4 requesters submits one job per round).
    #[arg(long, default_value_t = 30)]
    pub rounds: u32,
    /// Share of a cheater's leases it cheats on, bps.
    #[arg(long, default_value_t = 5_000)]
    pub cheat_bps: u32,
    /// Every proposer is honest (by default one validator withholds its blocks to re-roll
    /// audits of cheated leases), to measure what withholding changes.
    #[arg(long)]
    pub honest_proposers: bool,
    /// Cheaters meter honestly (by default they claim 4× the device time they used).
    #[arg(long)]
    pub honest_metering: bool,
}

/// One setting's figures.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Adversarial share of auditor stake, bps.
    pub sybil_bps: u32,
    /// The summed report.
    pub report: Report,
    /// Caught / cheated.
    pub detection: f64,
    /// Mean stated audit probability of the cheated leases.
    pub stated: f64,
    /// Cheaters' gain per cheated lease, base units.
    pub gain_per_cheat: f64,
}

/// Runs the simulation at each adversarial stake share and prints the table.
pub async fn adversary(g: &Global, a: AdversaryBenchArgs) -> anyhow::Result<()> {
    let shares = [1_000u32, 3_000, 4_500];
    let pb = if g.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(u64::from(a.seeds) * shares.len() as u64)
    };
    let mut rows = vec![];
    for sybil_bps in shares {
        let s = Scenario {
            sybil_bps,
            cheat_bps: a.cheat_bps,
            rounds: a.rounds,
            withholding: !a.honest_proposers,
            overclaim: !a.honest_metering,
        };
        let report = tokio::task::spawn_blocking({
            let pb = pb.clone();
            move || {
                let mut total = Report::empty();
                for seed in 0..a.seeds {
                    total.absorb(&adversary::run_seed(&s, u64::from(seed)));
                    pb.inc(1);
                }
                total
            }
        })
        .await?;
        rows.push(Row {
            sybil_bps,
            detection: report.detection(),
            stated: report.stated(),
            gain_per_cheat: report.gain_per_cheat(),
            report,
        });
    }
    pb.finish_and_clear();
    print(g.json, &rows, |rows| {
        let mut s = format!(
            "{:>7} {:>7} {:>8} {:>7} {:>9} {:>9} {:>10} {:>9} {:>9} {:>6} {:>6} {:>9} {:>10} {:>9} {:>8}\n",
            "sybil",
            "leases",
            "honest✗",
            "cheats",
            "caught",
            "stated",
            "gain/cheat",
            "withheld",
            "w-gain",
            "lazy✗",
            "sybil✗",
            "w-blocks",
            "over-gain",
            "cut/paid",
            "supply"
        );
        for r in rows {
            let p = &r.report;
            s += &format!(
                "{:>6.0}% {:>7} {:>8} {:>7} {:>8.1}% {:>8.1}% {:>10.1} {:>9} {:>9} {:>6} {:>6} {:>9} {:>10} {:>9} {:>8}\n",
                f64::from(r.sybil_bps) / 100.0,
                p.leases,
                p.honest_slashed,
                p.cheated,
                r.detection * 100.0,
                r.stated * 100.0,
                r.gain_per_cheat,
                p.withheld_penalties,
                p.withholder_gain,
                p.lazy_slashed,
                p.sybil_auditor_slashed,
                p.withheld_blocks,
                p.overclaim_gain,
                format!("{}/{}", p.overclaims_cut, p.overclaims_paid),
                if p.supply_conserved { "ok" } else { "BROKEN" }
            );
        }
        s
    });
    Ok(())
}
