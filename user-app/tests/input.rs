//! Hostile and odd input, through the built binary: endless or huge
//! input, duplicate keys, encodings, escape sequences, and big machines.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vmx-check");

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run vmx-check")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&file, bytes).unwrap();
    file
}

fn replay(bytes: &[u8], name: &str, json: bool) -> Output {
    let file = write(name, bytes);
    let mut args = vec!["--replay", file.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    run(&args)
}

fn ready() -> String {
    std::fs::read_to_string(fixture("skylake-x-ready.json")).unwrap()
}

#[test]
fn dev_zero_ends_at_once_with_65() {
    // Before, this read until memory ran out.
    let output = run(&["--replay", "/dev/zero"]);
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("byte 0 is NUL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn endless_stdin_is_refused_after_64_mib() {
    let mut child = Command::new(BIN)
        .args(["--replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // `yes`: writes until the reader goes away (then the write fails).
    let writer = std::thread::spawn(move || {
        let line = b"y\n".repeat(1 << 15);
        let mut written = 0u64;
        while stdin.write_all(&line).is_ok() {
            written += line.len() as u64;
            if written > 1 << 30 {
                break;
            }
        }
        written
    });
    let output = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("over 64 MiB"),
        "{}",
        stderr(&output)
    );
    assert!(written < 1 << 30, "stopped reading at the limit");
}

#[test]
fn a_regular_file_over_64_mib_is_refused_unread() {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("huge.json");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len((64 << 20) + 1).unwrap(); // sparse: no 64 MiB written
    let output = run(&["--replay", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(65));
    assert!(
        stderr(&output).contains("over 64 MiB"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn duplicate_keys_anywhere_are_65_with_the_keys_path() {
    let good = ready();
    let cases = [
        (
            good.replacen(r#""0x3a": "0x5""#, r#""0x3a": "0x1", "0x3a": "0x5""#, 1),
            r#"cpus[0].msrs."0x3a": the key is listed twice"#,
        ),
        (
            good.replacen(r#""0x3a": "0x5""#, r#""0x3a": "0x5", "0x3a": "0x1""#, 1),
            r#"cpus[0].msrs."0x3a": the key is listed twice"#,
        ),
        (
            good.replacen(
                r#""format": "vmx-dump/1""#,
                r#""format": "vmx-dump/1", "format": "vmx-dump/1""#,
                1,
            ),
            "format: the key is listed twice",
        ),
        (
            good.replacen(r#""cpu": 1"#, r#""cpu": 1, "cpu": 1"#, 1),
            "cpus[1].cpu: the key is listed twice",
        ),
        (
            good.replacen(
                r#""leaf": "0x1""#,
                r#""leaf": "0x1", "x": {"a": 1, "a": 2}"#,
                1,
            ),
            "cpus[0].cpuid[1].x.a: the key is listed twice",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let output = replay(text.as_bytes(), &format!("dup-{i}.json"), false);
        assert_eq!(output.status.code(), Some(65), "{expected}");
        assert!(
            stderr(&output).contains(expected),
            "{expected}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_utf8_byte_order_mark_is_accepted() {
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(ready().as_bytes());
    let output = replay(&bytes, "bom.json", false);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn utf16_is_refused_by_name() {
    let utf16 = |big: bool, bom: bool| {
        let mut bytes = Vec::new();
        if bom {
            bytes.extend_from_slice(if big { b"\xfe\xff" } else { b"\xff\xfe" });
        }
        for unit in ready().encode_utf16() {
            bytes.extend_from_slice(&if big {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            });
        }
        bytes
    };
    for (big, bom, name) in [
        (false, true, "little-endian"),
        (false, false, "little-endian"),
        (true, true, "big-endian"),
    ] {
        let output = replay(&utf16(big, bom), &format!("utf16-{big}-{bom}.json"), false);
        assert_eq!(output.status.code(), Some(65));
        let err = stderr(&output);
        assert!(err.contains(&format!("UTF-16 ({name})")), "{err}");
        assert!(err.contains("PowerShell"), "{err}");
    }
}

/// A dump whose `source` paints a fake READY over the screen.
fn hostile() -> String {
    ready().replacen(
        r#""source": ""#,
        r#""source": "\u001b[2J\u001b[H\u001b[32mREADY\u009b\u202e\r\n ok "#,
        1,
    )
}

#[test]
fn control_characters_from_a_dump_are_escaped_in_text() {
    let output = replay(hostile().as_bytes(), "escape.json", false);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{text:?}"
    );
    assert!(text.contains(r"\u{1b}[2J\u{1b}[H"), "{text}");
    assert!(text.contains(r"\u{9b}\u{202e}\r\n"), "{text}");
    assert_eq!(
        text.lines().next().unwrap(),
        "READY: VT-x can be used on this machine"
    );
}

#[test]
fn control_characters_from_a_dump_are_escaped_in_json_as_json_does() {
    let output = replay(hostile().as_bytes(), "escape-json.json", true);
    assert_eq!(output.status.code(), Some(0));
    assert!(!output.stdout.iter().any(|&b| b < 0x20 && b != b'\n'));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(r"\u001b[2J"), "{text}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["source"].as_str().unwrap().contains("\u{1b}[2J"));
}

/// The ready fixture with CPUID leaf 0's vendor bytes replaced.
fn with_vendor(vendor: &[u8; 12]) -> String {
    let le = |b: &[u8]| format!("{:#x}", u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut dump: Value = serde_json::from_str(&ready()).unwrap();
    for cpu in dump["cpus"].as_array_mut().unwrap() {
        for leaf in cpu["cpuid"].as_array_mut().unwrap() {
            if leaf["leaf"] == "0x0" {
                leaf["ebx"] = le(&vendor[0..4]).into();
                leaf["edx"] = le(&vendor[4..8]).into();
                leaf["ecx"] = le(&vendor[8..12]).into();
            }
        }
    }
    dump.to_string()
}

#[test]
fn the_vendor_is_the_12_character_string_its_controls_escaped() {
    // Zhaoxin's vendor ends in spaces: the JSON keeps all 12 characters.
    let output = replay(
        with_vendor(b"  Shanghai  ").as_bytes(),
        "zhaoxin.json",
        true,
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["vendor"], "  Shanghai  ");
    assert_eq!(report["cpus"][0]["vendor"], "  Shanghai  ");
    // A control character in the vendor is escaped, not replaced: in
    // text as `\u{1b}`, in JSON as JSON does.
    let hostile = with_vendor(b"\x1b[2JIntel\x07 x");
    let text = replay(hostile.as_bytes(), "vendor-escape.json", false);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(r"vendor         \u{1b}[2JIntel\u{7} x"),
        "{text}"
    );
    let json = replay(hostile.as_bytes(), "vendor-escape-json.json", true);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["cpus"][0]["vendor"], "\u{1b}[2JIntel\u{7} x");
}

#[test]
fn a_hypervisor_signature_is_escaped_not_replaced() {
    // CPUID.1:ECX bit 31 set and leaf 0x4000_0000 answering ESC "[2JABCDEFGH".
    let mut dump: Value = serde_json::from_str(&ready()).unwrap();
    for cpu in dump["cpus"].as_array_mut().unwrap() {
        let leaves = cpu["cpuid"].as_array_mut().unwrap();
        for leaf in leaves.iter_mut() {
            if leaf["leaf"] == "0x1" {
                let ecx = u32::from_str_radix(&leaf["ecx"].as_str().unwrap()[2..], 16).unwrap();
                leaf["ecx"] = format!("{:#x}", ecx | 1 << 31).into();
            }
        }
        leaves.push(serde_json::json!({"leaf": "0x40000000", "subleaf": "0x0",
            "eax": "0x40000001", "ebx": "0x4a325b1b", "ecx": "0x44434241", "edx": "0x48474645"}));
    }
    let text = replay(dump.to_string().as_bytes(), "signature-escape.json", false);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(r#"signature "\u{1b}[2JABCDEFGH""#), "{text}");
    let json = replay(
        dump.to_string().as_bytes(),
        "signature-escape-json.json",
        true,
    );
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["hypervisor"], "\u{1b}[2JABCDEFGH");
    assert_eq!(report["cpus"][0]["hypervisor"], "\u{1b}[2JABCDEFGH");
}

#[test]
fn file_names_are_escaped_in_errors() {
    let output = run(&["--replay", "/nonexistent/\x1b[2Jdump.json"]);
    assert_eq!(output.status.code(), Some(65));
    let err = stderr(&output);
    assert!(
        !err.contains('\x1b') && err.contains(r"\u{1b}[2Jdump.json"),
        "{err}"
    );
}

/// A dump of `n` processors, all the Skylake-X processor 0 of the ready
/// fixture renumbered, each with its `/proc/cpuinfo` lines.
pub fn many(n: u32) -> String {
    let mut dump: Value = serde_json::from_str(&ready()).unwrap();
    let linux: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("linux-kernel-enabled-vmx.json")).unwrap(),
    )
    .unwrap();
    let mut one = dump["cpus"][0].clone();
    one["linux"] = linux["cpus"][0]["linux"].clone();
    dump["cpus"] = (0..n)
        .map(|cpu| {
            let mut c = one.clone();
            c["cpu"] = cpu.into();
            c
        })
        .collect();
    serde_json::to_string_pretty(&dump).unwrap()
}

#[test]
fn a_machine_of_8192_processors_fits_and_collapses_into_one_row() {
    let dump = many(8192);
    assert!(dump.len() < 64 << 20, "{} bytes", dump.len());
    let output = replay(dump.as_bytes(), "8192.json", false);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<_> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("cpu "))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        rows,
        ["0-8191  ready    yes  no   0x5 (enabled)         no"]
    );
    let output = replay(dump.as_bytes(), "8192-json.json", true);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["cpus"].as_array().unwrap().len(),
        8192,
        "one object each"
    );
}
