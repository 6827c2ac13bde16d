//! # vmx-check
//!
//! Can this machine run VT-x, and if not, why? The checker observes each
//! logical processor (live, or from a `vmx-dump/1` dump), lets
//! [`vmx_core::diagnose`] decide, and reports the verdict, its reason and
//! the remedy as text or JSON.
//!
//! All VMX knowledge is vmx-core's: this crate gathers raw values
//! ([`backend`]), stores and replays them ([`dump`], [`replay`]) and lays out
//! the result ([`report`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod dump;
pub mod replay;
pub mod report;

use vmx_core::diagnose;
use vmx_core::diagnosis::Recorder;

use backend::Machine;
use dump::{CpuDump, Dump};
use replay::Replay;
use report::MachineReport;

/// Diagnoses every processor of a dump, exactly as the live run did.
#[must_use]
pub fn diagnose_dump(dump: &Dump) -> MachineReport {
    MachineReport {
        source: dump.source.clone(),
        notes: Vec::new(),
        cpus: dump
            .cpus
            .iter()
            .map(|cpu| (cpu.cpu, diagnose(&mut Replay(cpu))))
            .collect(),
    }
}

/// Diagnoses every processor of a live machine, recording every answer into
/// a dump that replays to the same report.
///
/// # Errors
/// The machine's processors cannot be enumerated or reached.
pub fn diagnose_machine(machine: &mut dyn Machine) -> anyhow::Result<(MachineReport, Dump)> {
    let mut cpus = Vec::new();
    let mut captured = Vec::new();
    for cpu in machine.processors()? {
        let mut dump = CpuDump::new(cpu);
        let mut report = None;
        machine.observe(cpu, &mut |observer| {
            report = Some(diagnose(&mut Recorder::new(observer, |o| dump.record(o))));
        })?;
        if let Some(report) = report {
            cpus.push((cpu, report));
            captured.push(dump);
        }
    }
    anyhow::ensure!(!cpus.is_empty(), "no processor could be observed");
    let source = machine.source();
    let report = MachineReport {
        source: source.clone(),
        notes: machine.notes(),
        cpus,
    };
    Ok((
        report,
        Dump {
            source: format!("vmx-check {} dump, {source}", env!("CARGO_PKG_VERSION")),
            cpus: captured,
        },
    ))
}
