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
//! malformed (a duplicate key anywhere included) is a [`DumpError`] naming
//! the JSON path of the bad field. A UTF-8 byte-order mark is accepted;
//! UTF-16 is refused by name; a dump over [`MAX_BYTES`] is refused unread
//! ([`read_limited`]).
//!
//! Optional Linux facts (what the kernel printed, read without root) let a
//! replay decide as the live run did (see `vmx_core::linux_facts`):
//!
//! ```json
//! { "format": "vmx-dump/1", "source": "…",
//!   "linux": { "kvm_intel": "loaded", "kvm_intel_nested": "Y", "kvm_enable_virt_at_load": "Y" },
//!   "cpus": [ { "cpu": 0, "cpuid": [], "linux": { "cpuinfo_flags": "fpu … vmx …",
//!       "cpuinfo_vmx_flags": "vnmi … ept vpid" } } ] }
//! ```
//!
//! A dump holds raw values only: decoding is vmx-core's, so a replay
//! ([`crate::replay`]) diagnoses exactly as the live run did.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use vmx_core::CpuidResult;
use vmx_core::diagnosis::{MsrRead, Observation};
use vmx_core::linux_facts::{KvmIntel, LinuxFacts};

/// The value of the `"format"` key.
pub const FORMAT: &str = "vmx-dump/1";

/// The largest dump accepted: 64 MiB. A dump of Linux's maximum of 8192
/// processors, each with its `/proc/cpuinfo` lines, takes about a third of
/// it.
pub const MAX_BYTES: u64 = 64 << 20;

/// A parsed dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// Where the values came from, as free text.
    pub source: String,
    /// The machine's Linux facts, when captured on Linux.
    pub linux: Option<HostLinux>,
    /// The processors, in the dump's order.
    pub cpus: Vec<CpuDump>,
}

/// The machine-wide Linux facts: the top-level `"linux"` object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostLinux {
    /// Whether `kvm_intel` is loaded (`"kvm_intel": "loaded" | "not-loaded"`).
    pub kvm_intel: Option<KvmIntel>,
    /// `/sys/module/kvm_intel/parameters/nested`, trimmed, when it exists.
    pub kvm_intel_nested: Option<String>,
    /// `/sys/module/kvm/parameters/enable_virt_at_load`, trimmed, when it
    /// exists.
    pub kvm_enable_virt_at_load: Option<String>,
}

/// One processor's Linux facts: its `"linux"` object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuLinux {
    /// Its `flags` line of `/proc/cpuinfo` (after the colon), when printed.
    pub cpuinfo_flags: Option<String>,
    /// Its `vmx flags` line of `/proc/cpuinfo`, when printed.
    pub cpuinfo_vmx_flags: Option<String>,
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
    /// The Linux facts about this processor, when captured on Linux.
    pub linux: Option<CpuLinux>,
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

    /// This processor's Linux facts with the machine's, for
    /// [`vmx_core::refine`]; all `None` when the dump has none.
    #[must_use]
    pub fn linux_facts<'a>(&'a self, host: Option<&'a HostLinux>) -> LinuxFacts<'a> {
        let cpu = self.linux.as_ref();
        LinuxFacts {
            cpuinfo_flags: cpu.and_then(|c| c.cpuinfo_flags.as_deref()),
            cpuinfo_vmx_flags: cpu.and_then(|c| c.cpuinfo_vmx_flags.as_deref()),
            kvm_intel: host.and_then(|h| h.kvm_intel),
            kvm_enable_virt_at_load: host.and_then(|h| h.kvm_enable_virt_at_load.as_deref()),
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

/// At most the first 40 characters of `text` and its length, for quoting
/// in an error: a hostile dump's key or value may be megabytes long.
fn clip(text: &str) -> Cow<'_, str> {
    const SHOWN: usize = 40;
    match text.char_indices().nth(SHOWN) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len())),
    }
}

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

/// A JSON path, built on the stack as the parser descends and rendered
/// only for an error: `cpus[0].msrs."0x3a"` (the format's own keys bare,
/// MSR keys quoted, `$` for the whole document).
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Quoted(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    fn key(&'a self, key: &'a str) -> Self {
        At::Key(self, key)
    }

    fn index(&'a self, i: usize) -> Self {
        At::Index(self, i)
    }

    fn error(&self, message: impl Into<String>) -> DumpError {
        error(&self.to_string(), message)
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => f.write_str("$"),
            At::Key(At::Root, key) => f.write_str(key),
            At::Quoted(At::Root, key) => write!(f, "{:?}", clip(key)),
            At::Index(At::Root, i) => write!(f, "[{i}]"),
            At::Key(parent, key) => write!(f, "{parent}.{key}"),
            At::Quoted(parent, key) => write!(f, "{parent}.{:?}", clip(key)),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn hex(value: &Value, at: &At<'_>) -> Result<u64, DumpError> {
    let text = value.as_str().ok_or_else(|| at.error("not a hex string"))?;
    parse_hex(text).ok_or_else(|| {
        at.error(format!(
            "not a hex string \"0x…\" of at most 64 bits: {:?}",
            clip(text)
        ))
    })
}

fn hex32(value: &Value, at: &At<'_>) -> Result<u32, DumpError> {
    let wide = hex(value, at)?;
    u32::try_from(wide).map_err(|_| at.error(format!("{wide:#x} does not fit in 32 bits")))
}

fn object<'a>(value: &'a Value, at: &At<'_>) -> Result<&'a Map<String, Value>, DumpError> {
    value.as_object().ok_or_else(|| at.error("not an object"))
}

fn required<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    at: &At<'_>,
) -> Result<&'a Value, DumpError> {
    object
        .get(key)
        .ok_or_else(|| at.error(format!("missing \"{key}\"")))
}

/// A step of a JSON path, for naming where a duplicate key is.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The JSON path of `steps` in this module's spelling: own keys bare
/// (`cpus[0].msrs`), any other key quoted (`msrs."0x3a"`).
fn render(steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Index(i) => path.push_str(&format!("[{i}]")),
            Step::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                let bare = key.len() <= 40
                    && key.starts_with(|c: char| c.is_ascii_lowercase())
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if bare {
                    path.push_str(key);
                } else {
                    path.push_str(&format!("{:?}", clip(key)));
                }
            }
        }
    }
    if path.is_empty() {
        "$".to_owned()
    } else {
        path
    }
}

/// Builds a [`Value`] as serde_json does, but refuses a key that an object
/// lists twice (serde_json keeps the last). The duplicate's path is
/// gathered only on the way out, as the error unwinds through the objects
/// and lists that hold it (`steps`, innermost first), so a good dump costs
/// no path at all.
struct Strict<'a> {
    steps: &'a RefCell<Option<Vec<Step>>>,
}

impl Strict<'_> {
    fn again(&self) -> Self {
        Strict { steps: self.steps }
    }

    /// Adds `step` to a duplicate's path while its error unwinds.
    fn unwinding(&self, step: impl FnOnce() -> Step) {
        if let Some(steps) = self.steps.borrow_mut().as_mut() {
            steps.push(step());
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        loop {
            match seq.next_element_seed(self.again()) {
                Ok(Some(value)) => list.push(value),
                Ok(None) => return Ok(Value::Array(list)),
                Err(e) => {
                    self.unwinding(|| Step::Index(list.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                *self.steps.borrow_mut() = Some(vec![Step::Key(key)]);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            match access.next_value_seed(self.again()) {
                Ok(value) => {
                    map.insert(key, value);
                }
                Err(e) => {
                    self.unwinding(|| Step::Key(key));
                    return Err(e);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// The document as UTF-8 text without a byte-order mark, or why not.
fn utf8_body(bytes: &[u8]) -> Result<&[u8], DumpError> {
    const UTF16: &str = "as Windows PowerShell 5.1's `>` writes it: a dump is UTF-8; write it with \
                         `vmx-check dump -o FILE`, or convert it (`Get-Content FILE | Set-Content \
                         -Encoding utf8 NEW`)";
    if let Some(rest) = bytes.strip_prefix(b"\xef\xbb\xbf") {
        return match memchr_nul(rest) {
            Some(at) => Err(error(
                "$",
                format!("byte {} is NUL: this is binary data, not JSON text", at + 3),
            )),
            None => Ok(rest),
        };
    }
    let head = &bytes[..bytes.len().min(64)];
    let nul_at = |odd: bool| {
        head.len() >= 2
            && head
                .iter()
                .enumerate()
                .filter(|&(i, _)| (i % 2 == 1) == odd)
                .all(|(_, &b)| b == 0)
    };
    if bytes.starts_with(b"\xff\xfe") || (nul_at(true) && !nul_at(false)) {
        return Err(error(
            "$",
            format!("the text is UTF-16 (little-endian), {UTF16}"),
        ));
    }
    if bytes.starts_with(b"\xfe\xff") || (nul_at(false) && !nul_at(true)) {
        return Err(error(
            "$",
            format!("the text is UTF-16 (big-endian), {UTF16}"),
        ));
    }
    if let Some(at) = memchr_nul(bytes) {
        return Err(error(
            "$",
            format!("byte {at} is NUL: this is binary data, not JSON text"),
        ));
    }
    Ok(bytes)
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// Why a dump could not be read: too large, or the reader failed.
#[derive(Debug)]
pub enum ReadError {
    /// More than [`MAX_BYTES`].
    TooLarge,
    /// A NUL byte within the first bytes: binary data, or UTF-16.
    NotText(DumpError),
    /// The read failed.
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(
                f,
                "over {} MiB, the limit of a dump (8192 processors fit well within it): not \
                 read further",
                MAX_BYTES >> 20
            ),
            Self::NotText(e) => e.fmt(f),
            Self::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads a dump of at most [`MAX_BYTES`] from `reader`, stopping as soon as
/// it is longer, or as soon as a chunk shows it is not UTF-8 text (a NUL
/// byte: `/dev/zero` ends at once). The bytes read are for [`Dump::parse`].
///
/// # Errors
/// [`ReadError`]: too large, not text, or the read failed.
pub fn read_limited(reader: impl Read) -> Result<Vec<u8>, ReadError> {
    let mut limited = reader.take(MAX_BYTES + 1);
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        let start = bytes.len();
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() as u64 > MAX_BYTES {
            return Err(ReadError::TooLarge);
        }
        if memchr_nul(&bytes[start..]).is_some() {
            utf8_body(&bytes).map_err(ReadError::NotText)?;
        }
    }
    Ok(bytes)
}

impl Dump {
    /// Parses a `vmx-dump/1` document.
    ///
    /// # Errors
    /// A [`DumpError`] with the path of the first bad field: not UTF-8 JSON
    /// (UTF-16 is named), a key listed twice, a wrong `"format"`, a missing
    /// or malformed field, a number that is not a hex string, a value too
    /// wide for its register, a duplicate processor, leaf or MSR, or no
    /// processor at all.
    pub fn parse(bytes: &[u8]) -> Result<Self, DumpError> {
        let body = utf8_body(bytes)?;
        let steps = RefCell::new(None);
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let parsed = Strict { steps: &steps }
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        let document = match parsed {
            Ok(document) => document,
            Err(e) => {
                return Err(match steps.into_inner() {
                    Some(mut steps) => {
                        steps.reverse();
                        error(
                            &render(&steps),
                            "the key is listed twice (a dump lists each key once)",
                        )
                    }
                    None => error("$", format!("not valid JSON: {e}")),
                });
            }
        };
        let root = At::Root;
        let top = object(&document, &root)?;
        match required(top, "format", &root)? {
            Value::String(format) if format == FORMAT => {}
            _ => return Err(error("format", format!("must be \"{FORMAT}\""))),
        }
        let source = match top.get("source") {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(_) => return Err(error("source", "not a string")),
        };
        let linux = match top.get("linux") {
            None => None,
            Some(value) => Some(parse_host_linux(value)?),
        };
        let list = required(top, "cpus", &root)?
            .as_array()
            .ok_or_else(|| error("cpus", "not a list"))?;
        let cpus_at = root.key("cpus");
        if list.is_empty() {
            return Err(error("cpus", "empty: a dump holds at least one processor"));
        }
        let mut cpus: Vec<CpuDump> = Vec::with_capacity(list.len());
        let mut seen = HashSet::with_capacity(list.len());
        for (i, value) in list.iter().enumerate() {
            let at = cpus_at.index(i);
            let cpu = parse_cpu(value, &at)?;
            if !seen.insert(cpu.cpu) {
                return Err(at
                    .key("cpu")
                    .error(format!("processor {} is listed twice", cpu.cpu)));
            }
            cpus.push(cpu);
        }
        Ok(Self {
            source,
            linux,
            cpus,
        })
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

/// An optional string field of a `"linux"` object.
fn text(fields: &Map<String, Value>, key: &str, at: &At<'_>) -> Result<Option<String>, DumpError> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(at.key(key).error("not a string")),
    }
}

fn parse_host_linux(value: &Value) -> Result<HostLinux, DumpError> {
    let root = At::Root;
    let at = root.key("linux");
    let fields = object(value, &at)?;
    let kvm_intel = match text(fields, "kvm_intel", &at)? {
        None => None,
        Some(name) => Some(KvmIntel::from_name(&name).ok_or_else(|| {
            at.key("kvm_intel").error(format!(
                "must be \"loaded\" or \"not-loaded\", not {:?}",
                clip(&name)
            ))
        })?),
    };
    Ok(HostLinux {
        kvm_intel,
        kvm_intel_nested: text(fields, "kvm_intel_nested", &at)?,
        kvm_enable_virt_at_load: text(fields, "kvm_enable_virt_at_load", &at)?,
    })
}

fn parse_cpu(value: &Value, at: &At<'_>) -> Result<CpuDump, DumpError> {
    let fields = object(value, at)?;
    let cpu_at = at.key("cpu");
    let cpu = match required(fields, "cpu", at)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| cpu_at.error("not a processor number"))?,
        other => hex32(other, &cpu_at)?,
    };
    let mut dump = CpuDump::new(cpu);

    let cpuid_at = at.key("cpuid");
    let leaves = required(fields, "cpuid", at)?
        .as_array()
        .ok_or_else(|| cpuid_at.error("not a list"))?;
    for (i, entry) in leaves.iter().enumerate() {
        let at = cpuid_at.index(i);
        let regs = object(entry, &at)?;
        let field = |name: &str| hex32(required(regs, name, &at)?, &at.key(name));
        let leaf = field("leaf")?;
        let subleaf = field("subleaf")?;
        let result = CpuidResult {
            eax: field("eax")?,
            ebx: field("ebx")?,
            ecx: field("ecx")?,
            edx: field("edx")?,
        };
        if dump.cpuid.insert((leaf, subleaf), result).is_some() {
            return Err(at.error(format!(
                "leaf {leaf:#x} subleaf {subleaf:#x} is listed twice"
            )));
        }
    }

    let msrs_at = at.key("msrs");
    let msrs = match fields.get("msrs") {
        None => None,
        Some(value) => Some(object(value, &msrs_at)?),
    };
    for (key, value) in msrs.into_iter().flatten() {
        // MSR keys are always quoted: `msrs."0x3a"`.
        let at = At::Quoted(&msrs_at, key);
        let msr = parse_hex(key)
            .and_then(|msr| u32::try_from(msr).ok())
            .ok_or_else(|| at.error("the key is not an MSR address \"0x…\""))?;
        let read = match value {
            Value::Null => None,
            value => Some(hex(value, &at)?),
        };
        if dump.msrs.insert(msr, read).is_some() {
            return Err(at.error(format!("MSR {msr:#x} is listed twice")));
        }
    }

    for (name, slot) in [("cr0", &mut dump.cr0), ("cr4", &mut dump.cr4)] {
        match fields.get(name) {
            None | Some(Value::Null) => {}
            Some(value) => *slot = Some(hex(value, &at.key(name))?),
        }
    }
    if let Some(value) = fields.get("linux") {
        let linux_at = at.key("linux");
        let linux = object(value, &linux_at)?;
        dump.linux = Some(CpuLinux {
            cpuinfo_flags: text(linux, "cpuinfo_flags", &linux_at)?,
            cpuinfo_vmx_flags: text(linux, "cpuinfo_vmx_flags", &linux_at)?,
        });
    }
    Ok(dump)
}

fn hex_text(value: u64) -> String {
    format!("{value:#x}")
}

impl Serialize for Dump {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Dump", 4)?;
        out.serialize_field("format", FORMAT)?;
        out.serialize_field("source", &self.source)?;
        if let Some(linux) = &self.linux {
            out.serialize_field("linux", linux)?;
        }
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
        let mut out = serializer.serialize_struct("CpuDump", 6)?;
        out.serialize_field("cpu", &self.cpu)?;
        out.serialize_field("cpuid", &Leaves(&self.cpuid))?;
        out.serialize_field("msrs", &Msrs(&self.msrs))?;
        if let Some(cr0) = self.cr0 {
            out.serialize_field("cr0", &hex_text(cr0))?;
        }
        if let Some(cr4) = self.cr4 {
            out.serialize_field("cr4", &hex_text(cr4))?;
        }
        if let Some(linux) = &self.linux {
            out.serialize_field("linux", linux)?;
        }
        out.end()
    }
}

/// Writes the present keys of a `"linux"` object, in order.
fn serialize_texts<S: Serializer>(
    serializer: S,
    fields: &[(&str, Option<&str>)],
) -> Result<S::Ok, S::Error> {
    let present = fields.iter().filter_map(|&(k, v)| Some((k, v?)));
    serializer.collect_map(present)
}

impl Serialize for HostLinux {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_texts(
            serializer,
            &[
                ("kvm_intel", self.kvm_intel.map(KvmIntel::name)),
                ("kvm_intel_nested", self.kvm_intel_nested.as_deref()),
                (
                    "kvm_enable_virt_at_load",
                    self.kvm_enable_virt_at_load.as_deref(),
                ),
            ],
        )
    }
}

impl Serialize for CpuLinux {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_texts(
            serializer,
            &[
                ("cpuinfo_flags", self.cpuinfo_flags.as_deref()),
                ("cpuinfo_vmx_flags", self.cpuinfo_vmx_flags.as_deref()),
            ],
        )
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
    fn errors_quote_at_most_the_start_of_a_long_text() {
        // A hostile dump must not turn its error into megabytes on stderr.
        let long = "Z".repeat(1 << 20);
        let lower = "k".repeat(1 << 20);
        for text in [
            EXAMPLE.replace(r#""0x3a": "0x5""#, &format!(r#""0x3a": "0x{long}""#)),
            EXAMPLE.replace(r#""0x3a": "0x5""#, &format!(r#""0x{long}": "0x5""#)),
            EXAMPLE.replace(
                r#""source""#,
                &format!(r#""{long}": 1, "{long}": 2, "source""#),
            ),
            EXAMPLE.replace(
                r#""source""#,
                &format!(r#""{lower}": 1, "{lower}": 2, "source""#),
            ),
            EXAMPLE.replace(
                r#""source""#,
                &format!(r#""linux": {{"kvm_intel": "{long}"}}, "source""#),
            ),
        ] {
            let e = err(&text);
            assert!(e.len() < 512, "{} bytes: {}", e.len(), &e[..512]);
            assert!(e.contains("ZZZZ") || e.contains("kkkk"), "{e}");
        }
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

    const LINUX: &str = r#"{ "format": "vmx-dump/1", "source": "s",
      "linux": { "kvm_intel": "loaded", "kvm_intel_nested": "Y", "kvm_enable_virt_at_load": "N" },
      "cpus": [ { "cpu": 0, "cpuid": [],
          "linux": { "cpuinfo_flags": "fpu vmx", "cpuinfo_vmx_flags": "ept vpid" } },
        { "cpu": 1, "cpuid": [], "linux": {} } ] }"#;

    #[test]
    fn linux_facts_parse_and_round_trip() {
        let dump = Dump::parse(LINUX.as_bytes()).unwrap();
        let host = dump.linux.as_ref().unwrap();
        assert_eq!(host.kvm_intel, Some(KvmIntel::Loaded));
        assert_eq!(host.kvm_intel_nested.as_deref(), Some("Y"));
        let facts = dump.cpus[0].linux_facts(Some(host));
        assert_eq!(facts.cpuinfo_flags, Some("fpu vmx"));
        assert_eq!(facts.cpuinfo_vmx_flags, Some("ept vpid"));
        assert_eq!(facts.kvm_enable_virt_at_load, Some("N"));
        assert_eq!(dump.cpus[1].linux, Some(CpuLinux::default()));
        assert_eq!(Dump::parse(dump.to_json().as_bytes()).unwrap(), dump);
        // Without the keys: no facts, and none written.
        let plain = Dump::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(plain.linux, None);
        assert_eq!(plain.cpus[0].linux_facts(None), LinuxFacts::default());
        assert!(!plain.to_json().contains("linux"));
    }

    #[test]
    fn bad_linux_facts_name_the_field() {
        assert_eq!(
            err(&LINUX.replace(r#""loaded""#, r#""yes""#)),
            r#"linux.kvm_intel: must be "loaded" or "not-loaded", not "yes""#
        );
        assert_eq!(
            err(&LINUX.replace(r#""fpu vmx""#, "7")),
            "cpus[0].linux.cpuinfo_flags: not a string"
        );
        assert_eq!(
            err(&LINUX.replace(r#""linux": {}"#, r#""linux": []"#)),
            "cpus[1].linux: not an object"
        );
    }

    #[test]
    fn encodings() {
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend_from_slice(EXAMPLE.as_bytes());
        assert!(Dump::parse(&bom).is_ok());
        let le: Vec<u8> = EXAMPLE.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(err_bytes(&le).contains("UTF-16 (little-endian)"));
        assert!(err_bytes(b"\0\0\0").contains("byte 0 is NUL"));
        assert!(err_bytes(b"\xef\xbb\xbf{\0").contains("byte 4 is NUL"));
        assert!(read_limited(&b"{}"[..]).is_ok());
        assert!(matches!(
            read_limited(std::io::repeat(b' ').take(MAX_BYTES + 10)),
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read_limited(std::io::repeat(0)),
            Err(ReadError::NotText(_))
        ));
    }

    fn err_bytes(bytes: &[u8]) -> String {
        Dump::parse(bytes).unwrap_err().to_string()
    }
}
