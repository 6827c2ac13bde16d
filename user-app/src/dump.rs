//! The dump format `vmx-dump/1`: the raw CPUID, MSR and control-register
//! values of each processor, as JSON with every number a hex string (JSON
//! numbers lose 64-bit precision).
//!
//! ```json
//! { "format": "vmx-dump/1", "source": "free text",
//!   "cpus": [ { "cpu": 0,
//!       "cpuid": [ { "leaf": "0x1", "subleaf": "0x0", "eax": "0x50654",
//!                    "ebx": "0x0", "ecx": "0x77faf3bf", "edx": "0xbfebfbff" } ],
//!       "msrs": { "0x3a": "0x5", "0x480": "0xd810000000002b", "0x48c": null },
//!       "cr0": "0x80000031", "cr4": "0x2020" } ] }
//! ```
//!
//! A CPUID leaf that is not listed was not captured. An MSR listed as
//! `null` faulted (#GP) when read; an MSR not listed was not read. `cr0`
//! and `cr4` are optional. Unknown keys are ignored; anything else that is
//! malformed is a [`DumpError`] naming the JSON path of the bad field.
//!
//! A dump holds raw values only: decoding is vmx-core's, so a replay
//! ([`crate::replay`]) diagnoses exactly as the live run did.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use vmx_core::CpuidResult;
use vmx_core::diagnosis::{MsrRead, Observation};

/// The value of the `"format"` key.
pub const FORMAT: &str = "vmx-dump/1";

/// A parsed dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// Where the values came from, as free text.
    pub source: String,
    /// The processors, in the dump's order.
    pub cpus: Vec<CpuDump>,
}

/// One processor's raw values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuDump {
    /// The logical processor's number.
    pub cpu: u32,
    /// The CPUID answers captured, keyed by (leaf, subleaf).
    pub cpuid: BTreeMap<(u32, u32), CpuidResult>,
    /// The MSRs read: `Some(value)`, or `None` when RDMSR faulted.
    pub msrs: BTreeMap<u32, Option<u64>>,
    /// CR0, where known.
    pub cr0: Option<u64>,
    /// CR4, where known.
    pub cr4: Option<u64>,
}

impl CpuDump {
    /// An empty capture of processor `cpu`.
    #[must_use]
    pub fn new(cpu: u32) -> Self {
        Self {
            cpu,
            ..Self::default()
        }
    }

    /// Adds what a [`Recorder`](vmx_core::diagnosis::Recorder) reported. A
    /// CPUID leaf asked twice keeps its first answer.
    pub fn record(&mut self, observation: Observation) {
        match observation {
            Observation::Cpuid {
                leaf,
                subleaf,
                result,
            } => {
                self.cpuid.entry((leaf, subleaf)).or_insert(result);
            }
            Observation::Msr { msr, read } => match read {
                MsrRead::Value(value) => {
                    self.msrs.insert(msr, Some(value));
                }
                MsrRead::Faulted => {
                    self.msrs.insert(msr, None);
                }
                MsrRead::Unavailable => {}
            },
            Observation::Cr0(value) => self.cr0 = Some(value),
            Observation::Cr4(value) => self.cr4 = Some(value),
        }
    }
}

/// Why a dump could not be parsed: the JSON path of the bad field and what
/// is wrong with it, e.g. `cpus[0].msrs."0x3a": not a hex string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    /// The JSON path (`$` for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for DumpError {}

fn error(path: &str, message: impl Into<String>) -> DumpError {
    DumpError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Parses a hex string `0x…` (either case, at most 16 digits).
fn parse_hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn hex(value: &Value, path: &str) -> Result<u64, DumpError> {
    let text = value
        .as_str()
        .ok_or_else(|| error(path, "not a hex string"))?;
    parse_hex(text).ok_or_else(|| {
        error(
            path,
            format!("not a hex string \"0x…\" of at most 64 bits: {text:?}"),
        )
    })
}

fn hex32(value: &Value, path: &str) -> Result<u32, DumpError> {
    let wide = hex(value, path)?;
    u32::try_from(wide).map_err(|_| error(path, format!("{wide:#x} does not fit in 32 bits")))
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, DumpError> {
    value
        .as_object()
        .ok_or_else(|| error(path, "not an object"))
}

fn required<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Value, DumpError> {
    object
        .get(key)
        .ok_or_else(|| error(path, format!("missing \"{key}\"")))
}

/// A JSON path step for one of the format's own keys: `path.name`.
fn key_path(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

impl Dump {
    /// Parses a `vmx-dump/1` document.
    ///
    /// # Errors
    /// A [`DumpError`] with the path of the first bad field: not JSON, a
    /// wrong `"format"`, a missing or malformed field, a number that is not
    /// a hex string, a value too wide for its register, a duplicate
    /// processor, leaf or MSR, or no processor at all.
    pub fn parse(bytes: &[u8]) -> Result<Self, DumpError> {
        let document: Value = serde_json::from_slice(bytes)
            .map_err(|e| error("$", format!("not valid JSON: {e}")))?;
        let top = object(&document, "$")?;
        match required(top, "format", "$")? {
            Value::String(format) if format == FORMAT => {}
            _ => return Err(error("format", format!("must be \"{FORMAT}\""))),
        }
        let source = match top.get("source") {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(_) => return Err(error("source", "not a string")),
        };
        let list = required(top, "cpus", "$")?
            .as_array()
            .ok_or_else(|| error("cpus", "not a list"))?;
        if list.is_empty() {
            return Err(error("cpus", "empty: a dump holds at least one processor"));
        }
        let mut cpus: Vec<CpuDump> = Vec::with_capacity(list.len());
        for (i, value) in list.iter().enumerate() {
            let path = format!("cpus[{i}]");
            let cpu = parse_cpu(value, &path)?;
            if cpus.iter().any(|c| c.cpu == cpu.cpu) {
                return Err(error(
                    &format!("{path}.cpu"),
                    format!("processor {} is listed twice", cpu.cpu),
                ));
            }
            cpus.push(cpu);
        }
        Ok(Self { source, cpus })
    }

    /// The dump as pretty-printed `vmx-dump/1` JSON, ending in a newline.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serializing plain strings and maps of strings cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn parse_cpu(value: &Value, path: &str) -> Result<CpuDump, DumpError> {
    let fields = object(value, path)?;
    let cpu_path = key_path(path, "cpu");
    let cpu = match required(fields, "cpu", path)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| error(&cpu_path, "not a processor number"))?,
        other => hex32(other, &cpu_path)?,
    };
    let mut dump = CpuDump::new(cpu);

    let cpuid_path = key_path(path, "cpuid");
    let leaves = required(fields, "cpuid", path)?
        .as_array()
        .ok_or_else(|| error(&cpuid_path, "not a list"))?;
    for (i, entry) in leaves.iter().enumerate() {
        let path = format!("{cpuid_path}[{i}]");
        let regs = object(entry, &path)?;
        let field = |name: &str| hex32(required(regs, name, &path)?, &key_path(&path, name));
        let leaf = field("leaf")?;
        let subleaf = field("subleaf")?;
        let result = CpuidResult {
            eax: field("eax")?,
            ebx: field("ebx")?,
            ecx: field("ecx")?,
            edx: field("edx")?,
        };
        if dump.cpuid.insert((leaf, subleaf), result).is_some() {
            return Err(error(
                &path,
                format!("leaf {leaf:#x} subleaf {subleaf:#x} is listed twice"),
            ));
        }
    }

    let msrs_path = key_path(path, "msrs");
    let msrs = match fields.get("msrs") {
        None => None,
        Some(value) => Some(object(value, &msrs_path)?),
    };
    for (key, value) in msrs.into_iter().flatten() {
        // MSR keys are always quoted: `msrs."0x3a"`.
        let path = format!("{msrs_path}.{key:?}");
        let msr = parse_hex(key)
            .and_then(|msr| u32::try_from(msr).ok())
            .ok_or_else(|| error(&path, "the key is not an MSR address \"0x…\""))?;
        let read = match value {
            Value::Null => None,
            value => Some(hex(value, &path)?),
        };
        if dump.msrs.insert(msr, read).is_some() {
            return Err(error(&path, format!("MSR {msr:#x} is listed twice")));
        }
    }

    for (name, slot) in [("cr0", &mut dump.cr0), ("cr4", &mut dump.cr4)] {
        match fields.get(name) {
            None | Some(Value::Null) => {}
            Some(value) => *slot = Some(hex(value, &key_path(path, name))?),
        }
    }
    Ok(dump)
}

fn hex_text(value: u64) -> String {
    format!("{value:#x}")
}

impl Serialize for Dump {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Dump", 3)?;
        out.serialize_field("format", FORMAT)?;
        out.serialize_field("source", &self.source)?;
        out.serialize_field("cpus", &self.cpus)?;
        out.end()
    }
}

impl Serialize for CpuDump {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Leaves<'a>(&'a BTreeMap<(u32, u32), CpuidResult>);
        impl Serialize for Leaves<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(|(&(leaf, subleaf), r)| {
                    [
                        ("leaf", leaf),
                        ("subleaf", subleaf),
                        ("eax", r.eax),
                        ("ebx", r.ebx),
                        ("ecx", r.ecx),
                        ("edx", r.edx),
                    ]
                    .map(|(name, value)| (name, hex_text(value.into())))
                    .into_iter()
                    .collect::<Leaf>()
                }))
            }
        }
        /// One CPUID entry, its keys in register order.
        struct Leaf(Vec<(&'static str, String)>);
        impl FromIterator<(&'static str, String)> for Leaf {
            fn from_iter<I: IntoIterator<Item = (&'static str, String)>>(iter: I) -> Self {
                Self(iter.into_iter().collect())
            }
        }
        impl Serialize for Leaf {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        struct Msrs<'a>(&'a BTreeMap<u32, Option<u64>>);
        impl Serialize for Msrs<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (&msr, read) in self.0 {
                    map.serialize_entry(&hex_text(msr.into()), &read.map(hex_text))?;
                }
                map.end()
            }
        }
        let mut out = serializer.serialize_struct("CpuDump", 5)?;
        out.serialize_field("cpu", &self.cpu)?;
        out.serialize_field("cpuid", &Leaves(&self.cpuid))?;
        out.serialize_field("msrs", &Msrs(&self.msrs))?;
        if let Some(cr0) = self.cr0 {
            out.serialize_field("cr0", &hex_text(cr0))?;
        }
        if let Some(cr4) = self.cr4 {
            out.serialize_field("cr4", &hex_text(cr4))?;
        }
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{ "format": "vmx-dump/1", "source": "free text",
      "cpus": [ { "cpu": 0,
          "cpuid": [ { "leaf": "0x1", "subleaf": "0x0", "eax": "0x50654", "ebx": "0x0",
                       "ecx": "0x77faf3bf", "edx": "0xbfebfbff" } ],
          "msrs": { "0x3a": "0x5", "0x480": "0xd810000000002b", "0x48c": null },
          "cr0": "0x80000031", "cr4": "0x2020" } ] }"#;

    fn err(text: &str) -> String {
        Dump::parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_example_of_the_contract() {
        let dump = Dump::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(dump.source, "free text");
        let cpu = &dump.cpus[0];
        assert_eq!(cpu.cpu, 0);
        assert_eq!(cpu.cpuid[&(1, 0)].ecx, 0x77fa_f3bf);
        assert_eq!(cpu.msrs[&0x3a], Some(5));
        assert_eq!(cpu.msrs[&0x480], Some(0x00d8_1000_0000_002b));
        assert_eq!(cpu.msrs[&0x48c], None);
        assert!(!cpu.msrs.contains_key(&0x481));
        assert_eq!((cpu.cr0, cpu.cr4), (Some(0x8000_0031), Some(0x2020)));
    }

    #[test]
    fn round_trips_through_json() {
        let dump = Dump::parse(EXAMPLE.as_bytes()).unwrap();
        let text = dump.to_json();
        assert_eq!(Dump::parse(text.as_bytes()).unwrap(), dump);
        assert!(text.contains(r#""0x48c": null"#), "{text}");
        assert!(text.find("\"format\"") < text.find("\"cpus\""));
    }

    #[test]
    fn full_64_bit_values_survive() {
        let text = EXAMPLE.replace("0xd810000000002b", "0xffffffffffffffff");
        let dump = Dump::parse(text.as_bytes()).unwrap();
        assert_eq!(dump.cpus[0].msrs[&0x480], Some(u64::MAX));
    }

    #[test]
    fn cpu_may_be_a_hex_string_and_unknown_keys_are_ignored() {
        let text = EXAMPLE
            .replace(r#""cpu": 0"#, r#""cpu": "0x3", "note": [1, 2]"#)
            .replace(r#""source""#, r#""extra": {}, "source""#);
        assert_eq!(Dump::parse(text.as_bytes()).unwrap().cpus[0].cpu, 3);
    }

    #[test]
    fn errors_name_the_path_of_the_bad_field() {
        assert_eq!(
            err(&EXAMPLE.replace(r#""0x3a": "0x5""#, r#""0x3a": 5"#)),
            r#"cpus[0].msrs."0x3a": not a hex string"#
        );
        assert_eq!(
            err(&EXAMPLE.replace(r#""ecx": "0x77faf3bf""#, r#""ecx": "0x177faf3bf""#)),
            "cpus[0].cpuid[0].ecx: 0x177faf3bf does not fit in 32 bits"
        );
        assert!(
            err(&EXAMPLE.replace(r#""leaf": "0x1", "#, ""))
                .starts_with("cpus[0].cpuid[0]: missing")
        );
        assert_eq!(
            err(&EXAMPLE.replace("vmx-dump/1", "vmx-dump/2")),
            "format: must be \"vmx-dump/1\""
        );
        assert!(
            err(&EXAMPLE.replace(r#""0x3a""#, r#""MSR58""#)).starts_with(r#"cpus[0].msrs."MSR58""#)
        );
        assert!(
            err(&EXAMPLE.replace(r#""cr4": "0x2020""#, r#""cr4": "2020""#))
                .starts_with("cpus[0].cr4: not a hex string")
        );
        assert!(err(r#"{"format": "vmx-dump/1", "cpus": []}"#).starts_with("cpus: empty"));
        assert!(err("[").starts_with("$: not valid JSON"));
        assert_eq!(err("[]"), "$: not an object");
    }

    #[test]
    fn duplicates_are_errors() {
        let twice = EXAMPLE.replace(r#""0x3a": "0x5""#, r#""0x3a": "0x5", "0x03a": "0x5""#);
        assert!(err(&twice).contains("listed twice"));
        let cpu = EXAMPLE
            .trim_start_matches(r#"{ "format": "vmx-dump/1", "source": "free text","#)
            .trim_end_matches('}')
            .trim()
            .trim_start_matches(r#""cpus": ["#)
            .trim_end_matches(']')
            .to_owned();
        let two = format!(r#"{{"format": "vmx-dump/1", "cpus": [{cpu}, {cpu}]}}"#);
        assert_eq!(err(&two), "cpus[1].cpu: processor 0 is listed twice");
    }

    #[test]
    fn records_what_a_recorder_reports() {
        let mut cpu = CpuDump::new(1);
        let result = CpuidResult {
            eax: 1,
            ..CpuidResult::default()
        };
        cpu.record(Observation::Cpuid {
            leaf: 0x8000_0000,
            subleaf: 0,
            result,
        });
        cpu.record(Observation::Cpuid {
            leaf: 0x8000_0000,
            subleaf: 0,
            result: CpuidResult::default(),
        });
        cpu.record(Observation::Msr {
            msr: 0x3a,
            read: MsrRead::Faulted,
        });
        cpu.record(Observation::Cr4(0x20));
        assert_eq!(cpu.cpuid[&(0x8000_0000, 0)], result);
        assert_eq!(cpu.msrs[&0x3a], None);
        assert_eq!(cpu.cr4, Some(0x20));
        assert_eq!(cpu.cr0, None);
    }
}
