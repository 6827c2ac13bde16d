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

use vmx_core::diagnosis::Recorder;
use vmx_core::linux_facts::{KvmIntel, LinuxNotes};
use vmx_core::{ProcessorReport, diagnose, refine};

use backend::Machine;
use dump::{CpuDump, Dump};
use replay::Replay;
use report::{CpuReport, MachineReport, cpu_list};

/// The report on a dump's processors, given each one's diagnosis (in the
/// dump's order): the Linux facts refine each verdict, and what they add
/// becomes notes after `notes`. Live and replayed runs both end here, so
/// they decide alike.
fn assemble(dump: &Dump, reports: Vec<ProcessorReport>, mut notes: Vec<String>) -> MachineReport {
    let host = dump.linux.as_ref();
    let mut linux_notes = LinuxNotes::empty();
    let cpus: Vec<CpuReport> = dump
        .cpus
        .iter()
        .zip(reports)
        .map(|(cpu, report)| {
            let refined = refine(&report, &cpu.linux_facts(host));
            linux_notes |= refined.notes;
            CpuReport {
                cpu: cpu.cpu,
                report,
                refined,
            }
        })
        .collect();
    notes.extend(linux_notes.texts().map(str::to_owned));
    if let Some(host) = host {
        if host.kvm_intel == Some(KvmIntel::Loaded) {
            if let Some(nested) = &host.kvm_intel_nested {
                notes.push(format!(
                    "kvm_intel's nested setting is {nested} (/sys/module/kvm_intel/parameters/nested)"
                ));
            }
        }
    }
    MachineReport {
        source: dump.source.clone(),
        notes,
        cpus,
    }
}

/// Diagnoses every processor of a dump, exactly as the live run did.
#[must_use]
pub fn diagnose_dump(dump: &Dump) -> MachineReport {
    let reports = dump
        .cpus
        .iter()
        .map(|cpu| diagnose(&mut Replay(cpu)))
        .collect();
    assemble(dump, reports, Vec::new())
}

/// Diagnoses every processor of a live machine that can be reached,
/// recording every answer (and the Linux facts) into a dump that replays
/// to the same verdicts. Processors that cannot be reached are named in a
/// note.
///
/// # Errors
/// The machine's processors cannot be enumerated, or none can be reached.
pub fn diagnose_machine(machine: &mut dyn Machine) -> anyhow::Result<(MachineReport, Dump)> {
    let mut reports = Vec::new();
    let mut captured = Vec::new();
    let mut unreached = Vec::new();
    let mut first_error = None;
    for cpu in machine.processors()? {
        let mut dump = CpuDump::new(cpu);
        let mut report = None;
        let observed = machine.observe(cpu, &mut |observer| {
            report = Some(diagnose(&mut Recorder::new(observer, |o| dump.record(o))));
        });
        match (observed, report) {
            (Ok(()), Some(report)) => {
                dump.linux = machine.cpu_linux(cpu);
                reports.push(report);
                captured.push(dump);
            }
            (Err(e), _) => {
                unreached.push(cpu);
                first_error.get_or_insert(e);
            }
            (Ok(()), None) => unreached.push(cpu),
        }
    }
    machine.finish()?;
    // In processor order, however the machine visited them.
    let mut observed: Vec<(CpuDump, ProcessorReport)> = captured.into_iter().zip(reports).collect();
    observed.sort_by_key(|(dump, _)| dump.cpu);
    let (captured, reports): (Vec<CpuDump>, Vec<ProcessorReport>) = observed.into_iter().unzip();
    unreached.sort_unstable();
    if captured.is_empty() {
        return Err(first_error
            .unwrap_or_else(|| anyhow::anyhow!("no processor could be observed"))
            .context("no processor could be observed"));
    }
    let mut notes = machine.notes();
    // The dump says so too: a replay must not show fewer processors
    // silently.
    let mut lacking = String::new();
    if !unreached.is_empty() {
        let why = first_error.map_or_else(String::new, |e| format!(" ({e:#})"));
        notes.push(format!(
            "{} of the {} online processors could not be reached{why} and are not checked: \
             {}; run without a CPU restriction (taskset, cgroup cpuset) to check them",
            unreached.len(),
            unreached.len() + captured.len(),
            cpu_list(&unreached)
        ));
        lacking = format!(
            "; online processors not reached, so not in this dump: {}",
            cpu_list(&unreached)
        );
    }
    let source = machine.source();
    let dump = Dump {
        source: format!(
            "vmx-check {} dump, {source}{lacking}",
            env!("CARGO_PKG_VERSION")
        ),
        linux: machine.host_linux(),
        cpus: captured,
    };
    let mut report = assemble(&dump, reports, notes);
    report.source = source;
    Ok((report, dump))
}
