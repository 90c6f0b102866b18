//! `llvq lattice`: the theta series and the class tables of Λ24, generated from the construction.
use anyhow::{bail, Result};
use clap::Subcommand;
use llvq_lattice::shell::{classes_of_shell, theta};
use llvq_lattice::MAX_SHELL_LIMIT;
use serde_json::json;

#[derive(Subcommand)]
pub enum LatticeCmd {
    /// Per shell m ≤ M: n(m), N(m), classes, log2 N(m) and the rate ⌈log2 N(m)⌉/24.
    Theta {
        /// Outermost shell M (2..=33).
        #[arg(long)]
        max_shell: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Each class of one shell: parity, absolute-value multiset, A, B and cardinality.
    Classes {
        /// The shell m (2..=33).
        #[arg(long)]
        shell: u32,
        #[arg(long)]
        json: bool,
    },
}

fn check_shell(m: u32) -> Result<()> {
    if !(2..=MAX_SHELL_LIMIT).contains(&m) {
        bail!("shell {m} is out of range 2..={MAX_SHELL_LIMIT} (larger balls do not fit a 64-bit index)");
    }
    Ok(())
}

pub fn run(cmd: LatticeCmd) -> Result<()> {
    match cmd {
        LatticeCmd::Theta { max_shell, json } => {
            check_shell(max_shell)?;
            let t = theta(max_shell);
            let mut rows = Vec::new();
            let mut cum: u128 = 0;
            for m in 2..=max_shell {
                let n = t[m as usize];
                cum += n;
                let classes = classes_of_shell(m).len();
                let log2 = (cum as f64).log2();
                let bits = 128 - (cum - 1).leading_zeros();
                rows.push((m, n, cum, classes, log2, bits));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|&(m, n, cum, classes, log2, bits)| {
                        json!({"m": m, "n": n.to_string(), "N": cum.to_string(), "classes": classes,
                               "log2_N": log2, "bits": bits, "bits_per_dim": bits as f64 / 24.0})
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                outln!(
                    "{:>3} {:>26} {:>26} {:>8} {:>9} {:>6} {:>9}",
                    "m",
                    "n(m)",
                    "N(m)",
                    "classes",
                    "log2 N",
                    "bits",
                    "bits/dim"
                )?;
                for (m, n, cum, classes, log2, bits) in rows {
                    outln!(
                        "{m:>3} {n:>26} {cum:>26} {classes:>8} {log2:>9.3} {bits:>6} {:>9.4}",
                        bits as f64 / 24.0
                    )?;
                }
            }
        }
        LatticeCmd::Classes { shell, json } => {
            check_shell(shell)?;
            let classes = classes_of_shell(shell);
            if json {
                let v: Vec<_> = classes
                    .iter()
                    .map(|c| {
                        json!({"parity": c.parity.name(), "multiset": c.multiset(), "A": c.golay_count,
                               "B": c.sign_bits, "perms": c.perms, "size": c.size})
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                outln!(
                    "{:>4} {:<6} {:>5} {:>3} {:>22} {:>22}  multiset (value^count)",
                    "#",
                    "parity",
                    "A",
                    "B",
                    "perms",
                    "size"
                )?;
                for (k, c) in classes.iter().enumerate() {
                    let ms: Vec<String> = c.multiset().iter().map(|(v, n)| format!("{v}^{n}")).collect();
                    outln!(
                        "{k:>4} {:<6} {:>5} {:>3} {:>22} {:>22}  {}",
                        c.parity.name(),
                        c.golay_count,
                        c.sign_bits,
                        c.perms,
                        c.size,
                        ms.join(" ")
                    )?;
                }
            }
        }
    }
    Ok(())
}
