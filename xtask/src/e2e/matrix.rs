//! The machines and scenarios `cargo xtask e2e` boots the test kernel on.

use std::fmt;

/// An emulated machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// Bochs with a CPU model (`bochs-bin -help cpu` lists them).
    Bochs {
        /// `cpu: model=`.
        model: String,
        /// `cpu: count=`.
        cpus: u32,
    },
    /// QEMU with its TCG (software) CPU: no VT-x.
    QemuTcg {
        /// `-smp`.
        cpus: u32,
    },
}

impl Machine {
    /// How many processors the machine has.
    pub fn cpus(&self) -> u32 {
        match self {
            Self::Bochs { cpus, .. } | Self::QemuTcg { cpus } => *cpus,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bochs { model, cpus } => write!(f, "bochs-{model}-{cpus}cpu"),
            Self::QemuTcg { cpus } => write!(f, "qemu-tcg-{cpus}cpu"),
        }
    }
}

/// One boot of the kernel: a machine and the kernel command line that picks
/// the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Where it runs.
    pub machine: Machine,
    /// The scenario's name, `scenario=` on the kernel command line.
    pub scenario: &'static str,
}

impl Case {
    /// A unique name, also the case's directory under `target/e2e/`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.machine, self.scenario)
    }

    /// The kernel command line.
    pub fn command_line(&self) -> String {
        format!("scenario={}", self.scenario)
    }
}

/// The CPU model of a single run when `--cpus` is given without `--model`.
pub const DEFAULT_MODEL: &str = "corei7_skylake_x";

fn bochs(model: &str, cpus: u32, scenario: &'static str) -> Case {
    Case {
        machine: Machine::Bochs {
            model: model.to_owned(),
            cpus,
        },
        scenario,
    }
}

/// The default matrix: every processor count on two VT-x models, an AMD
/// model, QEMU TCG.
pub fn default_matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for model in ["corei7_skylake_x", "tigerlake"] {
        for cpus in [1, 2, 4] {
            cases.push(bochs(model, cpus, "boot"));
        }
    }
    cases.push(bochs("ryzen", 1, "boot"));
    cases.push(Case {
        machine: Machine::QemuTcg { cpus: 2 },
        scenario: "boot",
    });
    cases
}

/// A single Bochs run (`--model`, `--cpus`).
pub fn single(model: &str, cpus: u32) -> Vec<Case> {
    vec![bochs(model, cpus, "boot")]
}
