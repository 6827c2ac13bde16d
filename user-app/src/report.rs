//! The report: vmx-core's per-processor diagnosis of a whole machine, as
//! aligned text for people or as one JSON object (`vmx-report/1`) for
//! scripts. Every fact shown is decoded by vmx-core; this module only lays
//! it out.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Value, json};
use vmx_core::cpuid::signature_text;
use vmx_core::diagnosis::FeatureControlReading;
use vmx_core::feature_control::FeatureControlFlags;
use vmx_core::{Capabilities, ProcessorReport, Verdict, VmxBasic, VmxCapabilities};

/// The value of the JSON report's `"format"` key.
pub const FORMAT: &str = "vmx-report/1";

/// The diagnosis of every processor of one machine (live or replayed).
#[derive(Debug, Clone)]
pub struct MachineReport {
    /// Where the values came from.
    pub source: String,
    /// What the backend could not do, with what to do about it.
    pub notes: Vec<String>,
    /// Each processor's number and diagnosis, in order.
    pub cpus: Vec<(u32, ProcessorReport)>,
}

/// The exit status for a verdict: 0 ready, 1 not ready for a definite
/// reason, 2 undetermined.
#[must_use]
pub const fn exit_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Ready => 0,
        Verdict::Undetermined => 2,
        Verdict::NotIntel
        | Verdict::NestedUnavailable
        | Verdict::NoVmx
        | Verdict::DisabledByFirmware
        | Verdict::InUse
        | Verdict::VmxUnusable => 1,
    }
}

fn hex(value: u64) -> String {
    format!("{value:#x}")
}

fn sorted_names(caps: Capabilities) -> Vec<&'static str> {
    let mut names: Vec<_> = caps.linux_names().collect();
    names.sort_unstable();
    names
}

impl MachineReport {
    /// The machine's verdict: the first in order that any processor has
    /// (undetermined without processors).
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        Verdict::overall(self.cpus.iter().map(|(_, r)| r.verdict)).unwrap_or(Verdict::Undetermined)
    }

    /// The first processor with the machine's verdict: its reason and
    /// remedy are the machine's.
    #[must_use]
    pub fn deciding(&self) -> Option<&ProcessorReport> {
        let verdict = self.verdict();
        self.cpus
            .iter()
            .map(|(_, r)| r)
            .find(|r| r.verdict == verdict)
    }

    /// The capabilities every processor has (none without processors).
    #[must_use]
    pub fn capabilities(&self) -> Capabilities {
        self.cpus
            .iter()
            .map(|(_, r)| r.capability_names())
            .reduce(|a, b| a & b)
            .unwrap_or(Capabilities::empty())
    }

    /// The exit status: see [`exit_code`].
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        exit_code(self.verdict())
    }

    fn first(&self) -> Option<&ProcessorReport> {
        self.cpus.first().map(|(_, r)| r)
    }

    fn vendor(&self) -> Option<String> {
        let identity = self.first()?.identity?;
        Some(
            signature_text(&identity.vendor.signature())
                .as_str()
                .to_owned(),
        )
    }

    fn model(&self) -> Option<String> {
        Some(self.first()?.brand?.as_str().to_owned())
    }

    fn reason(&self) -> String {
        self.deciding().map_or_else(
            || "no processor was observed".to_owned(),
            |r| r.reason().to_string(),
        )
    }

    fn remedy(&self) -> &'static str {
        self.deciding().map_or(
            "capture a dump with at least one processor",
            ProcessorReport::remedy,
        )
    }

    /// The notes: the front end's, then each break of the SDM's rules for
    /// the capability MSRs that vmx-core found (once, however many
    /// processors report it). They never decide the verdict.
    fn all_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        for (_, report) in &self.cpus {
            for note in report.capability_notes() {
                let text = format!("capability MSRs: {note}");
                if !notes.contains(&text) {
                    notes.push(text);
                }
            }
        }
        notes
    }

    /// The report as one `vmx-report/1` JSON object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let hypervisor = self.first().and_then(ProcessorReport::hypervisor);
        json!({
            "format": FORMAT,
            "verdict": self.verdict().name(),
            "reason": self.reason(),
            "remedy": self.remedy(),
            "vendor": self.vendor(),
            "model": self.model(),
            "hypervisor": hypervisor.map(|h| signature_text(&h.signature()).as_str().to_owned()),
            "hypervisor_name": hypervisor.map(|h| h.name()),
            "capabilities": sorted_names(self.capabilities()),
            "source": self.source,
            "notes": self.all_notes(),
            "cpus": self.cpus.iter().map(|(cpu, r)| cpu_json(*cpu, r)).collect::<Vec<_>>(),
        })
    }

    /// The report as text: the verdict in capitals, its reason and remedy,
    /// then the machine and each processor.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = self.verdict();
        let headline = match verdict {
            Verdict::Ready => "VT-x can be used on this machine",
            Verdict::Undetermined => "cannot tell yet whether VT-x can be used",
            _ => "VT-x cannot be used on this machine",
        };
        let _ = writeln!(out, "{}: {headline}", verdict.name().to_ascii_uppercase());
        field(&mut out, "reason", &self.reason());
        field(&mut out, "remedy", self.remedy());
        out.push('\n');

        if let Some(vendor) = self.vendor() {
            field(&mut out, "vendor", &vendor);
        }
        if let Some(model) = self.model() {
            field(&mut out, "model", &model);
        }
        if let Some(identity) = self.first().and_then(|r| r.identity) {
            let hypervisor = identity.hypervisor.map_or_else(
                || {
                    if identity.features.is_some_and(|f| f.hypervisor_present()) {
                        "present (CPUID hypervisor bit), signature not captured".to_owned()
                    } else {
                        "none (bare metal)".to_owned()
                    }
                },
                |h| {
                    format!(
                        "{}, signature \"{}\"",
                        h.name(),
                        signature_text(&h.signature())
                    )
                },
            );
            field(&mut out, "hypervisor", &hypervisor);
            if identity.vendor.is_amd_v() {
                field(
                    &mut out,
                    "AMD-V (SVM)",
                    if identity.svm {
                        "offered"
                    } else {
                        "not offered"
                    },
                );
            }
            field(
                &mut out,
                "address width",
                &format!("{} bits (physical)", identity.physical_address_width),
            );
        }
        field(&mut out, "source", &self.source);
        for note in &self.all_notes() {
            field(&mut out, "note", note);
        }
        out.push('\n');

        self.processor_table(&mut out);
        self.vmx_basic(&mut out);
        let caps = sorted_names(self.capabilities());
        if !caps.is_empty() {
            out.push('\n');
            field(&mut out, "capabilities", &caps.join(" "));
        }
        for (cpu, report) in &self.cpus {
            let extra = report.capability_names() - self.capabilities();
            if !extra.is_empty() {
                field(
                    &mut out,
                    &format!("  cpu {cpu} only"),
                    &sorted_names(extra).join(" "),
                );
            }
        }
        out
    }

    fn processor_table(&self, out: &mut String) {
        let rows: Vec<[String; 6]> = self
            .cpus
            .iter()
            .map(|(cpu, r)| {
                let identity = r.identity;
                let bit =
                    |b: Option<bool>| b.map_or("?", |b| if b { "yes" } else { "no" }).to_owned();
                let features = identity.and_then(|i| i.features);
                let fc = match r.feature_control {
                    FeatureControlReading::Read(fc) => {
                        format!("{} ({})", hex(fc.raw()), fc.state().name())
                    }
                    other => other.name().to_owned(),
                };
                [
                    cpu.to_string(),
                    r.verdict.name().to_owned(),
                    bit(features.map(|f| f.vmx())),
                    bit(features.map(|f| f.smx())),
                    fc,
                    r.cr4_vmxe().map_or("unknown".to_owned(), |v| bit(Some(v))),
                ]
            })
            .collect();
        let header = [
            "cpu",
            "verdict",
            "VMX",
            "SMX",
            "IA32_FEATURE_CONTROL",
            "CR4.VMXE",
        ]
        .map(str::to_owned);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i == 0 {
                    let _ = write!(line, "{cell:>w$}");
                } else {
                    let _ = write!(line, "  {cell:<w$}");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }

    fn vmx_basic(&self, out: &mut String) {
        let all: Vec<(u32, VmxCapabilities)> = self
            .cpus
            .iter()
            .filter_map(|(cpu, r)| Some((*cpu, r.capabilities?)))
            .collect();
        let Some(&(_, first)) = all.first() else {
            return;
        };
        let same = all.len() == self.cpus.len() && all.iter().all(|(_, c)| c.basic == first.basic);
        let groups: Vec<(String, VmxBasic)> = if same {
            vec![("every processor".to_owned(), first.basic)]
        } else {
            all.iter()
                .map(|(cpu, c)| (format!("cpu {cpu}"), c.basic))
                .collect()
        };
        for (whom, basic) in groups {
            let _ = writeln!(out, "\nIA32_VMX_BASIC = {:#018x} ({whom})", basic.raw());
            let yes_no = |b: bool| if b { "yes" } else { "no" };
            let usable = match basic.check_usable() {
                Ok(()) => "yes".to_owned(),
                Err(e) => format!("no: {e}"),
            };
            for (name, value) in [
                ("VMCS revision id", hex(basic.revision_id().into())),
                (
                    "VMXON region size",
                    format!("{} bytes", basic.region_size()),
                ),
                (
                    "VMCS memory type",
                    format!("{} ({})", basic.memory_type(), basic.memory_type_name()),
                ),
                (
                    "32-bit addresses only",
                    yes_no(basic.physical_address_32bit()).to_owned(),
                ),
                ("dual-monitor SMM", yes_no(basic.dual_monitor()).to_owned()),
                (
                    "INS/OUTS exit info",
                    yes_no(basic.ins_outs_reporting()).to_owned(),
                ),
                ("TRUE_* controls", yes_no(basic.true_controls()).to_owned()),
                ("usable here", usable),
            ] {
                field_at(out, 25, &format!("  {name}"), &value);
            }
        }
    }
}

fn cpu_json(cpu: u32, r: &ProcessorReport) -> Value {
    let identity = r.identity;
    let features = identity.and_then(|i| i.features);
    let feature_control = match r.feature_control {
        FeatureControlReading::Read(fc) => {
            let flags = fc.flags();
            json!({
                "state": r.feature_control.name(),
                "raw": hex(fc.raw()),
                "locked": flags.contains(FeatureControlFlags::LOCK),
                "vmx_inside_smx": flags.contains(FeatureControlFlags::VMX_INSIDE_SMX),
                "vmx_outside_smx": flags.contains(FeatureControlFlags::VMX_OUTSIDE_SMX),
            })
        }
        other => json!({ "state": other.name(), "raw": null }),
    };
    let vmx_basic = r.capabilities.map(|c| {
        let basic = c.basic;
        json!({
            "raw": hex(basic.raw()),
            "revision_id": hex(basic.revision_id().into()),
            "region_size": basic.region_size(),
            "memory_type": basic.memory_type(),
            "memory_type_name": basic.memory_type_name(),
            "physical_address_32bit": basic.physical_address_32bit(),
            "dual_monitor": basic.dual_monitor(),
            "ins_outs_reporting": basic.ins_outs_reporting(),
            "true_controls": basic.true_controls(),
            "usable": basic.check_usable().is_ok(),
            "problem": basic.check_usable().err().map(|e| e.to_string()),
        })
    });
    let names: BTreeSet<&str> = r.capability_names().linux_names().collect();
    json!({
        "cpu": cpu,
        "verdict": r.verdict.name(),
        "reason": r.reason().to_string(),
        "remedy": r.remedy(),
        "vendor": identity.map(|i| signature_text(&i.vendor.signature()).as_str().to_owned()),
        "vmx": features.map(|f| f.vmx()),
        "smx": features.map(|f| f.smx()),
        "hypervisor_present": features.map(|f| f.hypervisor_present()),
        "hypervisor": r.hypervisor().map(|h| signature_text(&h.signature()).as_str().to_owned()),
        "svm": identity.map(|i| i.svm),
        "physical_address_width": identity.map(|i| i.physical_address_width),
        "feature_control": feature_control,
        "vmx_basic": vmx_basic,
        "cr0": r.cr0.map(hex),
        "cr4": r.cr4.map(hex),
        "cr4_vmxe": r.cr4_vmxe(),
        "capabilities": names,
    })
}

/// Writes `name  value`, the value wrapped at 78 columns under itself.
fn field(out: &mut String, name: &str, value: &str) {
    field_at(out, 15, name, value);
}

/// [`field`] with the value starting at column `column` (or after the
/// name, if longer).
fn field_at(out: &mut String, column: usize, name: &str, value: &str) {
    const WIDTH: usize = 78;
    let indent = column.max(name.len() + 1);
    let mut line = format!("{name:<indent$}");
    let mut empty = true;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "{line}");
            line = " ".repeat(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        for verdict in Verdict::ALL {
            let expected = match verdict {
                Verdict::Ready => 0,
                Verdict::Undetermined => 2,
                _ => 1,
            };
            assert_eq!(exit_code(verdict), expected, "{verdict}");
        }
    }

    #[test]
    fn long_values_wrap_under_themselves() {
        let mut out = String::new();
        field(&mut out, "remedy", &"word ".repeat(30));
        let lines: Vec<_> = out.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= 78));
        assert!(lines[1].starts_with(&" ".repeat(15)));
        assert!(lines[0].starts_with("remedy         word"));
    }

    #[test]
    fn no_processors_is_undetermined() {
        let report = MachineReport {
            source: String::new(),
            notes: vec![],
            cpus: vec![],
        };
        assert_eq!(report.verdict(), Verdict::Undetermined);
        assert_eq!(report.exit_code(), 2);
        assert_eq!(report.capabilities(), Capabilities::empty());
    }
}
