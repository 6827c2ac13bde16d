//! The command line as scripts use it: `-q`, a closed stdout, options on
//! either side of the command, `dump -o -`, `--help`, and the JSON report's
//! keys.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vmx-check");

fn fixture(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file)
        .to_str()
        .unwrap()
        .to_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run vmx-check")
}

#[test]
fn quiet_prints_nothing_and_exits_with_the_verdict() {
    for (file, code) in [
        ("skylake-x-ready.json", 0),
        ("skylake-x-in-use.json", 1),
        ("skylake-x-undetermined.json", 2),
    ] {
        let file = fixture(file);
        for args in [
            vec!["-q", "--replay", &file],
            vec!["check", "--quiet", "--replay", &file],
            vec!["--json", "-q", "--replay", &file],
        ] {
            let output = run(&args);
            assert_eq!(output.status.code(), Some(code), "{args:?}");
            assert!(
                output.stdout.is_empty() && output.stderr.is_empty(),
                "{args:?}"
            );
        }
    }
    // Errors are still said.
    let output = run(&["-q", "--replay", "/nonexistent.json"]);
    assert_eq!(output.status.code(), Some(65));
    assert!(!output.stderr.is_empty());
}

/// Runs with stdout a pipe that is closed after one line (`| head -1`).
fn head_1(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    let _ = stdout.read(&mut first);
    drop(stdout);
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_exit_code() {
    // Many processors: the JSON report is larger than a pipe's buffer.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let big = dir.join("closed-pipe.json");
    let mut dump: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("skylake-x-in-use.json")).unwrap())
            .unwrap();
    let one = dump["cpus"][0].clone();
    dump["cpus"] = (0..512u32)
        .map(|n| {
            let mut c = one.clone();
            c["cpu"] = n.into();
            c
        })
        .collect();
    // A long source: the text report (one row for all) outgrows the pipe too.
    dump["source"] = "word ".repeat(40_000).into();
    std::fs::write(&big, dump.to_string()).unwrap();
    for args in [
        vec!["--json", "--replay", big.to_str().unwrap()],
        vec!["--replay", big.to_str().unwrap()],
    ] {
        let output = head_1(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            output.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn options_go_before_or_after_the_command() {
    let file = fixture("skylake-x-ready.json");
    for args in [
        vec!["--json", "check", "--replay", &file],
        vec!["--json", "--replay", &file, "check"],
        vec!["check", "--json", "--replay", &file],
        vec!["--replay", &file, "--json"],
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["verdict"], "ready", "{args:?}");
    }
}

#[test]
fn dump_to_dash_is_stdout() {
    let output = run(&["dump", "-o", "-"]);
    assert_eq!(output.status.code(), Some(0));
    let dump: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(dump["format"], "vmx-dump/1");
    assert!(!PathBuf::from("-").exists());
}

#[test]
fn help_lists_exit_codes_examples_and_windows_only_commands() {
    let output = run(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for words in [
        "Exit codes:",
        "0   ready",
        "2   undetermined",
        "64  usage error",
        "65  the dump",
        "74  the output",
        "Examples:",
        "vmx-check -q",
        "Windows only",
    ] {
        assert!(help.contains(words), "{words}: {help}");
    }
    // Every not-ready verdict is listed under exit code 1, from vmx-core.
    let one = help.lines().find(|l| l.starts_with("  1 ")).unwrap();
    let listed: Vec<&str> = one.rsplit(": ").next().unwrap().split(", ").collect();
    for verdict in vmx_core::Verdict::ALL {
        let code = user_app::report::exit_code(verdict);
        assert_eq!(
            listed.contains(&verdict.name()),
            code == 1,
            "{verdict}: {one}"
        );
    }
}

#[test]
fn the_json_report_always_has_its_documented_keys() {
    const TOP: &[&str] = &[
        "format",
        "verdict",
        "reason",
        "remedy",
        "vendor",
        "model",
        "hypervisor",
        "hypervisor_name",
        "capabilities",
        "source",
        "notes",
        "cpus",
    ];
    const CPU: &[&str] = &[
        "cpu",
        "verdict",
        "reason",
        "remedy",
        "vendor",
        "vmx",
        "smx",
        "hypervisor_present",
        "hypervisor",
        "svm",
        "physical_address_width",
        "feature_control",
        "vmx_basic",
        "cr0",
        "cr4",
        "cr4_vmxe",
        "capabilities",
    ];
    const FEATURE_CONTROL: &[&str] = &[
        "state",
        "raw",
        "locked",
        "vmx_inside_smx",
        "vmx_outside_smx",
    ];
    // The README and the book list the same per-processor keys, in order.
    for doc in ["../README.md", "../docs/src/checker.md"] {
        let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(doc))
            .unwrap()
            .replace('\n', " ");
        let start = text.find("per processor `\"cpu\"`").unwrap() + "per processor ".len();
        let end = start + text[start..].find("Raw register values").unwrap();
        let listed: Vec<&str> = text[start..end]
            .split('`')
            .filter(|w| w.starts_with('"') && w.ends_with('"') && w.len() > 2)
            .map(|w| w.trim_matches('"'))
            .collect();
        assert_eq!(listed, CPU, "{doc}");
    }
    for file in [
        "skylake-x-ready.json",
        "kvm-epyc-guest.json",
        "skylake-x-undetermined.json",
    ] {
        let output = run(&["--json", "--replay", &fixture(file)]);
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&report), TOP, "{file}");
        for cpu in report["cpus"].as_array().unwrap() {
            assert_eq!(keys(cpu), CPU, "{file}");
            assert_eq!(keys(&cpu["feature_control"]), FEATURE_CONTROL, "{file}");
        }
    }
}

#[test]
fn source_says_what_was_read() {
    // This machine, as the test runs: the MSR path only if an MSR answered.
    let output = run(&["--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let source = report["source"].as_str().unwrap();
    let read_msr = report["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| !c["feature_control"]["raw"].is_null() || !c["vmx_basic"].is_null());
    assert_eq!(source.contains("/dev/cpu/N/msr"), read_msr, "{source}");
    assert_eq!(source.contains("no MSR read"), !read_msr, "{source}");
}
