//! The report: vmx-core's per-processor diagnosis of a whole machine, as
//! aligned text for people or as one JSON object (`vmx-report/1`) for
//! scripts. Every fact shown is decoded by vmx-core; this module only lays
//! it out.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hash;

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use serde_json::Value;
use vmx_core::diagnosis::FeatureControlReading;
use vmx_core::feature_control::FeatureControlFlags;
use vmx_core::linux_facts::Refined;
use vmx_core::{Capabilities, ProcessorReport, Verdict, VmxBasic};

/// The value of the JSON report's `"format"` key.
pub const FORMAT: &str = "vmx-report/1";

/// One processor: vmx-core's diagnosis of its registers, and the verdict
/// with the Linux facts taken into account (the same without them).
#[derive(Debug, Clone, Copy)]
pub struct CpuReport {
    /// The logical processor's number.
    pub cpu: u32,
    /// What the registers say.
    pub report: ProcessorReport,
    /// The verdict, reason and capabilities to report.
    pub refined: Refined,
}

impl CpuReport {
    /// The processor's verdict.
    #[must_use]
    pub const fn verdict(&self) -> Verdict {
        self.refined.verdict
    }

    /// Why, as a sentence.
    #[must_use]
    pub fn reason(&self) -> String {
        self.refined.reason(&self.report).to_string()
    }

    /// What to do about it.
    #[must_use]
    pub fn remedy(&self) -> &'static str {
        self.refined.remedy(&self.report)
    }

    /// The capabilities by name.
    #[must_use]
    pub const fn capabilities(&self) -> Capabilities {
        self.refined.capabilities
    }

    /// The 12-character vendor string, every byte kept (Zhaoxin's
    /// `"  Shanghai  "` ends in spaces) as the character of that value, so
    /// that a control byte is escaped where it is shown, not replaced.
    fn vendor(&self) -> Option<String> {
        let identity = self.report.identity?;
        Some(
            identity
                .vendor
                .signature()
                .iter()
                .map(|&b| char::from(b))
                .collect(),
        )
    }

    fn model(&self) -> Option<String> {
        Some(self.report.brand?.as_str().to_owned())
    }
}

/// The diagnosis of every processor of one machine (live or replayed).
#[derive(Debug, Clone)]
pub struct MachineReport {
    /// Where the values came from.
    pub source: String,
    /// What the backend could not do or noticed, and what the Linux facts
    /// add, each once.
    pub notes: Vec<String>,
    /// Each processor, in order.
    pub cpus: Vec<CpuReport>,
}

/// The exit status for a verdict: 0 ready, 2 undetermined, 1 any other
/// (not ready, for a definite reason).
#[must_use]
pub fn exit_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Ready => 0,
        Verdict::Undetermined => 2,
        _ => 1,
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

/// `text` with every control character (C0, DEL, C1) and every Unicode
/// bidirectional control escaped as `\u{…}` (`\t`, `\n`, `\r` as such),
/// so that text from a dump or the machine cannot move the cursor, clear
/// the screen or reorder what is shown around it.
#[must_use]
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    };
    if !text.chars().any(bad) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if bad(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Processor numbers as ranges: `0-3,5,7-8`.
#[must_use]
pub fn cpu_list(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

/// "processor 3" or "processors 0-3,5".
fn processors_named(cpus: &[u32]) -> String {
    if cpus.len() == 1 {
        format!("processor {}", cpus[0])
    } else {
        format!("processors {}", cpu_list(cpus))
    }
}

/// Distinct values, each with the processors that have it.
type Groups<K> = Vec<(K, Vec<u32>)>;

/// The distinct values, each with the processors that have it, in the
/// order they first appear: linear in the number of processors.
fn groups<K: Eq + Hash + Clone>(items: impl IntoIterator<Item = (u32, K)>) -> Groups<K> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut out: Groups<K> = Vec::new();
    for (cpu, key) in items {
        match index.get(&key) {
            Some(&i) => out[i].1.push(cpu),
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, vec![cpu]));
            }
        }
    }
    out
}

impl MachineReport {
    /// The machine's verdict: the first in order that any processor has
    /// (undetermined without processors).
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        Verdict::overall(self.cpus.iter().map(CpuReport::verdict)).unwrap_or(Verdict::Undetermined)
    }

    /// The processors with the machine's verdict: the first one's reason
    /// and remedy are the machine's.
    #[must_use]
    pub fn deciding(&self) -> Vec<&CpuReport> {
        let verdict = self.verdict();
        self.cpus
            .iter()
            .filter(|c| c.verdict() == verdict)
            .collect()
    }

    /// The capabilities every processor has (none without processors).
    #[must_use]
    pub fn capabilities(&self) -> Capabilities {
        self.cpus
            .iter()
            .map(CpuReport::capabilities)
            .reduce(|a, b| a & b)
            .unwrap_or(Capabilities::empty())
    }

    /// The exit status: see [`exit_code`].
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        exit_code(self.verdict())
    }

    /// The machine's value of a per-processor fact: the value when every
    /// processor has the same (`None` when none has one), else `Err` with
    /// each value (`None`: unknown) and its processors. With `only_known`,
    /// processors without a value are left out.
    fn shared<K: Eq + Hash + Clone>(
        &self,
        only_known: bool,
        fact: impl Fn(&CpuReport) -> Option<K>,
    ) -> Result<Option<K>, Groups<Option<K>>> {
        let mut all = groups(
            self.cpus
                .iter()
                .map(|c| (c.cpu, fact(c)))
                .filter(|(_, value)| !only_known || value.is_some()),
        );
        match all.len() {
            0 => Ok(None),
            1 => Ok(all.pop().and_then(|(k, _)| k)),
            _ => Err(all),
        }
    }

    /// A header line's text: the shared value, or each with its
    /// processors when they differ.
    fn header(
        &self,
        only_known: bool,
        fact: impl Fn(&CpuReport) -> Option<String>,
    ) -> Option<String> {
        match self.shared(only_known, fact) {
            Ok(value) => value,
            Err(all) => Some(format!(
                "differs between processors: {}",
                all.iter()
                    .map(|(v, cpus)| {
                        format!(
                            "{} ({})",
                            v.as_deref().unwrap_or("unknown"),
                            processors_named(cpus)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }

    fn reason(&self) -> String {
        let deciding = self.deciding();
        let Some(first) = deciding.first() else {
            return "no processor was observed".to_owned();
        };
        if deciding.len() == self.cpus.len() {
            first.reason()
        } else {
            let cpus: Vec<u32> = deciding.iter().map(|c| c.cpu).collect();
            format!(
                "{} of {}: {}",
                processors_named(&cpus),
                self.cpus.len(),
                first.reason()
            )
        }
    }

    fn remedy(&self) -> &'static str {
        self.deciding()
            .first()
            .map_or("capture a dump with at least one processor", |c| c.remedy())
    }

    /// The notes: the front end's, then each break of the SDM's rules for
    /// the capability MSRs that vmx-core found (once, however many
    /// processors report it). They never decide the verdict.
    pub fn all_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        let mut seen: HashSet<String> = notes.iter().cloned().collect();
        for cpu in &self.cpus {
            for note in cpu.report.capability_notes() {
                let text = format!("capability MSRs: {note}");
                if seen.insert(text.clone()) {
                    notes.push(text);
                }
            }
        }
        notes
    }

    /// The report as one `vmx-report/1` JSON object. Every documented key
    /// is always there, `null` when unknown (or, for the machine's vendor,
    /// model and hypervisor, when processors differ: see each processor).
    #[must_use]
    pub fn to_json(&self) -> Value {
        // Serializing strings, numbers and booleans into a Value cannot fail.
        serde_json::to_value(ReportJson(self)).unwrap_or(Value::Null)
    }

    /// [`MachineReport::to_json`] as pretty-printed text ending in a newline,
    /// written in one pass.
    #[must_use]
    pub fn to_json_text(&self) -> String {
        // Serializing strings, numbers and booleans cannot fail.
        let mut text = serde_json::to_string_pretty(&ReportJson(self)).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The report as text: the verdict in capitals, its reason and remedy,
    /// then the machine and its processors, those with the same row as one.
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

        if let Some(vendor) = self.header(false, CpuReport::vendor) {
            field(&mut out, "vendor", &vendor);
        }
        if let Some(model) = self.header(false, CpuReport::model) {
            field(&mut out, "model", &model);
        }
        if let Some(hypervisor) = self.header(false, hypervisor_text) {
            field(&mut out, "hypervisor", &hypervisor);
        }
        if let Some(svm) = self.header(true, |c| {
            let identity = c.report.identity?;
            identity.vendor.is_amd_v().then(|| {
                if identity.svm {
                    "offered"
                } else {
                    "not offered"
                }
                .to_owned()
            })
        }) {
            field(&mut out, "AMD-V (SVM)", &svm);
        }
        if let Some(width) = self.header(false, |c| {
            let identity = c.report.identity?;
            Some(format!(
                "{} bits (physical)",
                identity.physical_address_width
            ))
        }) {
            field(&mut out, "address width", &width);
        }
        field(&mut out, "source", &self.source);
        for note in &self.all_notes() {
            field(&mut out, "note", note);
        }
        out.push('\n');

        self.processor_table(&mut out);
        self.vmx_basic(&mut out);
        let common = self.capabilities();
        let caps = sorted_names(common);
        let extras = groups(
            self.cpus
                .iter()
                .map(|c| (c.cpu, c.capabilities() - common))
                .filter(|(_, extra)| !extra.is_empty()),
        );
        if !caps.is_empty() || !extras.is_empty() {
            out.push('\n');
            let shared = if caps.is_empty() {
                "none that every processor has".to_owned()
            } else {
                caps.join(" ")
            };
            field(&mut out, "capabilities", &shared);
        }
        for (extra, cpus) in extras {
            field(
                &mut out,
                &format!("  {} only", processors_named(&cpus)),
                &sorted_names(extra).join(" "),
            );
        }
        out
    }

    fn processor_table(&self, out: &mut String) {
        let bit = |b: Option<bool>| b.map_or("?", |b| if b { "yes" } else { "no" }).to_owned();
        let rows = groups(self.cpus.iter().map(|c| {
            let r = &c.report;
            let features = r.identity.and_then(|i| i.features);
            let fc = match r.feature_control {
                FeatureControlReading::Read(fc) => {
                    format!("{} ({})", hex(fc.raw()), fc.state().name())
                }
                other => other.name().to_owned(),
            };
            (
                c.cpu,
                [
                    c.verdict().name().to_owned(),
                    bit(features.map(|f| f.vmx())),
                    bit(features.map(|f| f.smx())),
                    fc,
                    r.cr4_vmxe().map_or("unknown".to_owned(), |v| bit(Some(v))),
                ],
            )
        }));
        let rows: Vec<[String; 6]> = rows
            .into_iter()
            .map(|([a, b, c, d, e], cpus)| [cpu_list(&cpus), a, b, c, d, e])
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
            // Padded by hand: a format width (`{cell:>w$}`) may be at most
            // 65535, which a hostile dump's processor list exceeds.
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w.saturating_sub(cell.len()));
                if i == 0 {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str("  ");
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }

    fn vmx_basic(&self, out: &mut String) {
        let all = groups(
            self.cpus
                .iter()
                .filter_map(|c| Some((c.cpu, c.report.capabilities?.basic))),
        );
        let with = all.iter().map(|(_, cpus)| cpus.len()).sum::<usize>();
        for (basic, cpus) in &all {
            let whom = if all.len() == 1 && with == self.cpus.len() {
                "every processor".to_owned()
            } else {
                processors_named(cpus)
            };
            vmx_basic_lines(out, *basic, &whom);
        }
    }
}

/// A hypervisor signature as text: trailing NULs and spaces trimmed, every
/// other byte kept as the character of that value, so that a control byte
/// is escaped where it is shown (text: `\u{1b}`; JSON: as JSON does)
/// rather than replaced.
fn signature_string(signature: &[u8]) -> String {
    let end = signature
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    signature[..end].iter().map(|&b| char::from(b)).collect()
}

fn hypervisor_text(c: &CpuReport) -> Option<String> {
    let identity = c.report.identity?;
    Some(identity.hypervisor.map_or_else(
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
                signature_string(&h.signature())
            )
        },
    ))
}

fn vmx_basic_lines(out: &mut String, basic: VmxBasic, whom: &str) {
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

/// The report as `vmx-report/1`, serialized field by field (no
/// intermediate [`Value`] tree: a report of 8192 processors is written in
/// one pass).
struct ReportJson<'a>(&'a MachineReport);

impl Serialize for ReportJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let report = self.0;
        let hypervisor = report
            .shared(false, |c| c.report.hypervisor())
            .ok()
            .flatten();
        let mut out = serializer.serialize_struct("Report", 12)?;
        out.serialize_field("format", FORMAT)?;
        out.serialize_field("verdict", report.verdict().name())?;
        out.serialize_field("reason", &report.reason())?;
        out.serialize_field("remedy", report.remedy())?;
        out.serialize_field(
            "vendor",
            &report.shared(false, CpuReport::vendor).ok().flatten(),
        )?;
        out.serialize_field(
            "model",
            &report.shared(false, CpuReport::model).ok().flatten(),
        )?;
        out.serialize_field(
            "hypervisor",
            &hypervisor.map(|h| signature_string(&h.signature())),
        )?;
        out.serialize_field("hypervisor_name", &hypervisor.map(|h| h.name()))?;
        out.serialize_field("capabilities", &sorted_names(report.capabilities()))?;
        out.serialize_field("source", &report.source)?;
        out.serialize_field("notes", &report.all_notes())?;
        out.serialize_field("cpus", &CpusJson(&report.cpus))?;
        out.end()
    }
}

struct CpusJson<'a>(&'a [CpuReport]);

impl Serialize for CpusJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(CpuJson::of))
    }
}

/// One processor of the JSON report, its keys in the documented order.
#[derive(Serialize)]
struct CpuJson {
    cpu: u32,
    verdict: &'static str,
    reason: String,
    remedy: &'static str,
    vendor: Option<String>,
    vmx: Option<bool>,
    smx: Option<bool>,
    hypervisor_present: Option<bool>,
    hypervisor: Option<String>,
    svm: Option<bool>,
    physical_address_width: Option<u8>,
    feature_control: FeatureControlJson,
    vmx_basic: Option<VmxBasicJson>,
    cr0: Option<String>,
    cr4: Option<String>,
    cr4_vmxe: Option<bool>,
    capabilities: Vec<&'static str>,
}

#[derive(Serialize)]
struct FeatureControlJson {
    state: &'static str,
    raw: Option<String>,
    locked: Option<bool>,
    vmx_inside_smx: Option<bool>,
    vmx_outside_smx: Option<bool>,
}

#[derive(Serialize)]
struct VmxBasicJson {
    raw: String,
    revision_id: String,
    region_size: u32,
    memory_type: u8,
    memory_type_name: &'static str,
    physical_address_32bit: bool,
    dual_monitor: bool,
    ins_outs_reporting: bool,
    true_controls: bool,
    usable: bool,
    problem: Option<String>,
}

impl CpuJson {
    fn of(c: &CpuReport) -> Self {
        let r = &c.report;
        let identity = r.identity;
        let features = identity.and_then(|i| i.features);
        let feature_control = match r.feature_control {
            FeatureControlReading::Read(fc) => {
                let flags = fc.flags();
                FeatureControlJson {
                    state: r.feature_control.name(),
                    raw: Some(hex(fc.raw())),
                    locked: Some(flags.contains(FeatureControlFlags::LOCK)),
                    vmx_inside_smx: Some(flags.contains(FeatureControlFlags::VMX_INSIDE_SMX)),
                    vmx_outside_smx: Some(flags.contains(FeatureControlFlags::VMX_OUTSIDE_SMX)),
                }
            }
            other => FeatureControlJson {
                state: other.name(),
                raw: None,
                locked: None,
                vmx_inside_smx: None,
                vmx_outside_smx: None,
            },
        };
        let vmx_basic = r.capabilities.map(|c| {
            let basic = c.basic;
            let usable = basic.check_usable();
            VmxBasicJson {
                raw: hex(basic.raw()),
                revision_id: hex(basic.revision_id().into()),
                region_size: basic.region_size(),
                memory_type: basic.memory_type(),
                memory_type_name: basic.memory_type_name(),
                physical_address_32bit: basic.physical_address_32bit(),
                dual_monitor: basic.dual_monitor(),
                ins_outs_reporting: basic.ins_outs_reporting(),
                true_controls: basic.true_controls(),
                usable: usable.is_ok(),
                problem: usable.err().map(|e| e.to_string()),
            }
        });
        Self {
            cpu: c.cpu,
            verdict: c.verdict().name(),
            reason: c.reason(),
            remedy: c.remedy(),
            vendor: c.vendor(),
            vmx: features.map(|f| f.vmx()),
            smx: features.map(|f| f.smx()),
            hypervisor_present: features.map(|f| f.hypervisor_present()),
            hypervisor: r.hypervisor().map(|h| signature_string(&h.signature())),
            svm: identity.map(|i| i.svm),
            physical_address_width: identity.map(|i| i.physical_address_width),
            feature_control,
            vmx_basic,
            cr0: r.cr0.map(hex),
            cr4: r.cr4.map(hex),
            cr4_vmxe: r.cr4_vmxe(),
            capabilities: sorted_names(c.capabilities()),
        }
    }
}

/// Writes `name  value`, the value wrapped at 78 columns under itself.
fn field(out: &mut String, name: &str, value: &str) {
    field_at(out, 15, name, value);
}

/// [`field`] with the value starting at column `column` (or after the
/// name, if longer).
fn field_at(out: &mut String, column: usize, name: &str, value: &str) {
    const WIDTH: usize = 78;
    let name = escape_controls(name);
    let value = escape_controls(value);
    let indent = column.max(name.len() + 1);
    // Padded by hand: a format width may be at most 65535, which a long
    // processor list in the name ("  processors … only") exceeds.
    let mut line = format!("{name}{}", " ".repeat(indent - name.len()));
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

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_not_copied() {
        assert!(matches!(escape_controls("plain text"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\u{1b}[2Jb\tc\u{7f}\u{85}\u{202e}"),
            "a\\u{1b}[2Jb\\tc\\u{7f}\\u{85}\\u{202e}"
        );
        let mut out = String::new();
        field(&mut out, "source\u{1b}", "x\u{1b}[H\ny");
        assert_eq!(out, "source\\u{1b}   x\\u{1b}[H\\ny\n");
    }

    #[test]
    fn every_bidirectional_control_is_escaped() {
        // Unicode's Bidi_Control property: U+061C, U+200E, U+200F,
        // U+202A..=U+202E, U+2066..=U+2069.
        let controls = ['\u{61c}', '\u{200e}', '\u{200f}']
            .into_iter()
            .chain('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}');
        for c in controls {
            let text = std::format!("a{c}b");
            let escaped = escape_controls(&text);
            assert_eq!(
                escaped,
                std::format!("a\\u{{{:x}}}b", u32::from(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn a_cpu_list_wider_than_any_format_width_is_laid_out() {
        // Alternating verdicts over 24000 processors numbered from 100000:
        // each row's processor list is over 65535 characters, the most a
        // format width may be (`{cell:>w$}` panicked).
        use crate::dump::{CpuDump, Dump};
        use vmx_core::CpuidResult;
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        let cpus = (0..24_000u32)
            .map(|i| {
                let mut d = CpuDump::new(100_000 + i);
                d.cpuid
                    .insert((0, 0), r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
                d.cpuid
                    .insert((1, 0), r(0x50654, 0, 0x77fa_f3bf, 0xbfeb_fbff));
                d.msrs
                    .insert(0x3a, Some(if i % 2 == 0 { 0x1 } else { 0x0 }));
                d
            })
            .collect();
        let dump = Dump {
            source: String::new(),
            linux: None,
            cpus,
        };
        let text = crate::diagnose_dump(&dump).to_text();
        let row = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("cpu  verdict"))
            .find(|l| l.starts_with("100000,100002,"))
            .unwrap();
        assert!(row.len() > 1 << 16, "{}", row.len());
        assert!(
            row.ends_with("  disabled-by-firmware  yes  no   0x1 (disabled-by-firmware)  unknown"),
            "{}",
            &row[row.len() - 80..]
        );
    }

    #[test]
    fn a_field_name_wider_than_any_format_width_is_laid_out() {
        // "  processors … only" over 65535 characters (a format width's
        // limit: `{name:<indent$}` panicked).
        let name = "1,".repeat(40_000);
        let mut out = String::new();
        field(&mut out, &name, "ept vpid");
        assert!(
            out.starts_with(&std::format!("{name} ept")),
            "{}",
            &out[..40]
        );
        assert!(out.trim_end().ends_with("vpid"));
    }

    #[test]
    fn cpu_lists_are_ranges() {
        assert_eq!(cpu_list(&[5, 0, 1, 2, 3, 7, 8]), "0-3,5,7-8");
        assert_eq!(cpu_list(&[4]), "4");
        assert_eq!(cpu_list(&[]), "");
    }

    /// xorshift64*: a fixed-seed generator, so that a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// A random processor: Intel or AMD, VMX and hypervisor bits, any
    /// IA32_FEATURE_CONTROL, capability MSRs or none, CR4 or none, and
    /// random Linux facts; the values are Bochs corei7_skylake_x's.
    fn random_cpu(rng: &mut Rng, cpu: u32) -> crate::dump::CpuDump {
        use crate::dump::{CpuDump, CpuLinux};
        use vmx_core::CpuidResult;
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        let mut d = CpuDump::new(cpu);
        let intel = (0x756e_6547, 0x6c65_746e, 0x4965_6e69);
        let amd = (0x6874_7541, 0x444d_4163, 0x6974_6e65);
        let (b, c, e) = rng.pick(&[intel, intel, intel, amd]);
        d.cpuid.insert((0, 0), r(0x16, b, c, e));
        let ecx = rng.pick(&[0x77fa_f3bf_u32, 0x77fa_f39f, 0xf7fa_f39f, 0xf7fa_f3bf]);
        d.cpuid.insert((1, 0), r(0x50654, 0, ecx, 0xbfeb_fbff));
        if ecx & (1 << 31) != 0 && rng.next() % 2 == 0 {
            d.cpuid.insert(
                (0x4000_0000, 0),
                r(0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d),
            );
        }
        if let Some(fc) = rng.pick(&[
            None,
            Some(None),
            Some(Some(0x0)),
            Some(Some(0x1)),
            Some(Some(0x5)),
            Some(Some(0x3)),
        ]) {
            d.msrs.insert(0x3a, fc);
        }
        if rng.next() % 3 != 0 {
            for (msr, value) in [
                (0x480, 0x00d8_1000_0000_002b_u64),
                (0x481, 0x0000_007f_0000_0016),
                (0x482, 0xf7f9_fffe_0401_e172),
                (0x486, 0x8000_0021),
                (0x487, 0xffff_ffff),
                (0x488, 0x2000),
                (0x489, 0x0037_27ff),
            ] {
                d.msrs.insert(msr, Some(value));
            }
        }
        d.cr4 = rng.pick(&[None, Some(0x20), Some(0x2020)]);
        if rng.next() % 2 == 0 {
            d.linux = Some(CpuLinux {
                cpuinfo_flags: rng
                    .pick(&[None, Some("fpu vmx smx"), Some("fpu smx")])
                    .map(str::to_owned),
                cpuinfo_vmx_flags: rng.pick(&[None, Some("vnmi ept vpid")]).map(str::to_owned),
            });
        }
        d
    }

    /// Each processor's verdict as the text table shows it (rows expanded).
    fn text_verdicts(text: &str) -> std::collections::BTreeMap<u32, String> {
        let mut out = std::collections::BTreeMap::new();
        let rows = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("cpu  verdict"))
            .skip(1)
            .take_while(|l| !l.is_empty());
        for row in rows {
            let mut cells = row.split_whitespace();
            let (list, verdict) = (cells.next().unwrap(), cells.next().unwrap());
            for part in list.split(',') {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                for cpu in a.parse::<u32>().unwrap()..=b.parse().unwrap() {
                    assert!(
                        out.insert(cpu, verdict.to_owned()).is_none(),
                        "cpu {cpu} twice"
                    );
                }
            }
        }
        out
    }

    #[test]
    fn text_and_json_agree_on_every_processors_verdict() {
        use crate::dump::{Dump, HostLinux};
        use vmx_core::linux_facts::KvmIntel;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..400 {
            let n = 1 + (rng.next() % 24) as u32;
            let cpus = (0..n)
                .map(|cpu| random_cpu(&mut rng, cpu * (1 + case % 3)))
                .collect();
            let linux = rng
                .pick(&[None, Some(KvmIntel::Loaded), Some(KvmIntel::NotLoaded)])
                .map(|k| HostLinux {
                    kvm_intel: Some(k),
                    kvm_intel_nested: Some("Y".to_owned()),
                    kvm_enable_virt_at_load: rng
                        .pick(&[None, Some("Y"), Some("N")])
                        .map(str::to_owned),
                });
            let dump = Dump {
                source: format!("case {case}"),
                linux,
                cpus,
            };
            let report = crate::diagnose_dump(&dump);
            let text = report.to_text();
            let json = report.to_json();
            let from_json: std::collections::BTreeMap<u32, String> = json["cpus"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        u32::try_from(c["cpu"].as_u64().unwrap()).unwrap(),
                        c["verdict"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            assert_eq!(
                from_json.len(),
                n as usize,
                "case {case}: one object per processor"
            );
            assert_eq!(text_verdicts(&text), from_json, "case {case}:\n{text}");
            let headline = text.split(':').next().unwrap().to_ascii_lowercase();
            assert_eq!(headline, json["verdict"].as_str().unwrap(), "case {case}");
            assert_eq!(json["verdict"].as_str().unwrap(), report.verdict().name());
        }
    }
}
