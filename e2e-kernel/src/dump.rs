//! The `dump` scenario's output: what vmx-core's diagnosis read on each
//! processor, as a `vmx-dump/1` document (the format of the checker's
//! `vmx-check check --replay FILE`, `user-app/src/dump.rs`) on COM1 between
//! the lines [`BEGIN`] and [`END`].
//!
//! The kernel has no heap: each processor's answers are kept in a
//! fixed-size [`Capture`] while the diagnosis runs there, and the BSP prints
//! the captures afterwards, formatting directly onto the serial line. Every
//! number is a lowercase hex string without leading zeros (`{:#x}`), MSR
//! keys too; an MSR whose RDMSR faulted is `null`; a CPUID leaf and subleaf
//! asked twice is listed once, with its first answer.

use core::fmt;

use vmx_core::diagnosis::{MsrRead, Observation};

use crate::println;

/// The line before the document.
pub const BEGIN: &str = "VMX-DUMP BEGIN";
/// The line after the document.
pub const END: &str = "VMX-DUMP END";
/// The document's `"source"`: the kernel cannot tell which emulator, model
/// or firmware it runs on, so it names only itself; `cargo xtask e2e`
/// prefixes the machine it booted.
pub const SOURCE: &str = "e2e-kernel dump scenario";

/// The most answers kept for one processor. The diagnosis asks for about
/// 8 CPUID leaves, 18 MSRs and 2 control registers.
const CAPACITY: usize = 48;

/// The answers one processor gave, in the order the diagnosis asked, each
/// key (CPUID leaf and subleaf, MSR, control register) once.
#[derive(Debug, Clone, Copy)]
pub struct Capture {
    observations: [Observation; CAPACITY],
    len: usize,
    /// Answers that did not fit.
    dropped: usize,
}

impl Capture {
    /// No answers yet.
    pub const fn new() -> Self {
        Self {
            observations: [Observation::Cr0(0); CAPACITY],
            len: 0,
            dropped: 0,
        }
    }

    /// Keeps `observation` unless its key was answered before.
    pub fn record(&mut self, observation: Observation) {
        if self
            .answers()
            .iter()
            .any(|kept| same_key(*kept, observation))
        {
            return;
        }
        match self.observations.get_mut(self.len) {
            Some(slot) => {
                *slot = observation;
                self.len += 1;
            }
            None => self.dropped += 1,
        }
    }

    /// How many answers did not fit (the dump would be incomplete).
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn answers(&self) -> &[Observation] {
        &self.observations[..self.len]
    }
}

/// Whether two answers are to the same question.
fn same_key(a: Observation, b: Observation) -> bool {
    match (a, b) {
        (
            Observation::Cpuid { leaf, subleaf, .. },
            Observation::Cpuid {
                leaf: other_leaf,
                subleaf: other_subleaf,
                ..
            },
        ) => leaf == other_leaf && subleaf == other_subleaf,
        (Observation::Msr { msr, .. }, Observation::Msr { msr: other, .. }) => msr == other,
        (Observation::Cr0(_), Observation::Cr0(_)) | (Observation::Cr4(_), Observation::Cr4(_)) => {
            true
        }
        _ => false,
    }
}

/// A JSON hex string: `"0x1f"`.
struct Hex(u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{:#x}\"", self.0)
    }
}

/// `,` after every item but the last.
fn separator(index: usize, count: usize) -> &'static str {
    if index + 1 < count { "," } else { "" }
}

/// Prints the captures of processors `0..captures.len()` as one
/// `vmx-dump/1` document between [`BEGIN`] and [`END`].
pub fn print(captures: &[Capture]) {
    println!("{BEGIN}");
    println!("{{");
    println!("  \"format\": \"vmx-dump/1\",");
    println!("  \"source\": \"{SOURCE}\",");
    println!("  \"cpus\": [");
    for (cpu, capture) in captures.iter().enumerate() {
        print_cpu(cpu, capture, separator(cpu, captures.len()));
    }
    println!("  ]");
    println!("}}");
    println!("{END}");
}

fn print_cpu(cpu: usize, capture: &Capture, trailer: &str) {
    println!("    {{");
    println!("      \"cpu\": {cpu},");

    let leaves = capture
        .answers()
        .iter()
        .filter(|o| matches!(o, Observation::Cpuid { .. }));
    let count = leaves.clone().count();
    println!("      \"cpuid\": [");
    for (index, observation) in leaves.enumerate() {
        if let Observation::Cpuid {
            leaf,
            subleaf,
            result,
        } = *observation
        {
            println!(
                "        {{ \"leaf\": {}, \"subleaf\": {}, \"eax\": {}, \"ebx\": {}, \"ecx\": {}, \"edx\": {} }}{}",
                Hex(leaf.into()),
                Hex(subleaf.into()),
                Hex(result.eax.into()),
                Hex(result.ebx.into()),
                Hex(result.ecx.into()),
                Hex(result.edx.into()),
                separator(index, count)
            );
        }
    }
    println!("      ],");

    let msrs = capture.answers().iter().filter_map(|o| match *o {
        Observation::Msr { msr, read } => match read {
            MsrRead::Value(value) => Some((msr, Some(value))),
            MsrRead::Faulted => Some((msr, None)),
            MsrRead::Unavailable => None,
        },
        _ => None,
    });
    let count = msrs.clone().count();
    println!("      \"msrs\": {{");
    for (index, (msr, value)) in msrs.enumerate() {
        let separator = separator(index, count);
        match value {
            Some(value) => println!("        {}: {}{separator}", Hex(msr.into()), Hex(value)),
            None => println!("        {}: null{separator}", Hex(msr.into())),
        }
    }

    let mut cr0 = None;
    let mut cr4 = None;
    for observation in capture.answers() {
        match *observation {
            Observation::Cr0(value) => cr0 = Some(value),
            Observation::Cr4(value) => cr4 = Some(value),
            _ => {}
        }
    }
    // The control registers are optional in the format; a ring-0 capture
    // always has them, but a missing one is left out rather than invented.
    let registers = [("cr0", cr0), ("cr4", cr4)];
    let known = registers
        .iter()
        .filter(|(_, value)| value.is_some())
        .count();
    println!("      }}{}", if known > 0 { "," } else { "" });
    for (index, (name, value)) in registers
        .iter()
        .filter_map(|(name, value)| Some((name, (*value)?)))
        .enumerate()
    {
        println!(
            "      \"{name}\": {}{}",
            Hex(value),
            separator(index, known)
        );
    }
    println!("    }}{trailer}");
}
