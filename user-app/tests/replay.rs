//! Replays of the dumps in `tests/fixtures/` through the built binary:
//! verdict, capabilities and exit code for each, and the contract's answers
//! to bad input.
//!
//! To add a dump (e.g. one the e2e kernel printed under Bochs), put it in
//! `tests/fixtures/` and add one line to `FIXTURES`.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vmx-check");

/// The capabilities vmx-core names for the Bochs corei7_skylake_x values
/// (the same list Linux prints as `vmx flags` for these controls).
const SKYLAKE_X: &[&str] = &[
    "ept",
    "ept_1gb",
    "ept_ad",
    "ept_violation_ve",
    "ept_x_only",
    "eptp_switching",
    "flexpriority",
    "invvpid",
    "ple",
    "pml",
    "preemption_timer",
    "shadow_vmcs",
    "tsc_offset",
    "tsc_scaling",
    "unrestricted_guest",
    "vapic",
    "vapic_reg",
    "vid",
    "vnmi",
    "vpid",
    "vtpr",
];

/// Bochs tigerlake: the Skylake-X set plus the monitor trap flag (primary
/// processor-based control bit 27, allowed-1 in its IA32_VMX_PROCBASED_CTLS
/// 0xfff9fffe0401e172).
const TIGERLAKE: &[&str] = &[
    "ept",
    "ept_1gb",
    "ept_ad",
    "ept_violation_ve",
    "ept_x_only",
    "eptp_switching",
    "flexpriority",
    "invvpid",
    "mtf",
    "ple",
    "pml",
    "preemption_timer",
    "shadow_vmcs",
    "tsc_offset",
    "tsc_scaling",
    "unrestricted_guest",
    "vapic",
    "vapic_reg",
    "vid",
    "vnmi",
    "vpid",
    "vtpr",
];

/// Bochs corei7_haswell_4770: the Skylake-X set without PML and TSC
/// scaling (secondary bits 17 and 25 are 0 in its IA32_VMX_PROCBASED_CTLS2
/// 0x00047fff00000000, as Haswell has neither).
const HASWELL: &[&str] = &[
    "ept",
    "ept_1gb",
    "ept_ad",
    "ept_violation_ve",
    "ept_x_only",
    "eptp_switching",
    "flexpriority",
    "invvpid",
    "ple",
    "preemption_timer",
    "shadow_vmcs",
    "tsc_offset",
    "unrestricted_guest",
    "vapic",
    "vapic_reg",
    "vid",
    "vnmi",
    "vpid",
    "vtpr",
];

struct Fixture {
    file: &'static str,
    verdict: &'static str,
    exit: i32,
    capabilities: &'static [&'static str],
    hypervisor: Option<&'static str>,
}

const fn fixture(
    file: &'static str,
    verdict: &'static str,
    exit: i32,
    capabilities: &'static [&'static str],
    hypervisor: Option<&'static str>,
) -> Fixture {
    Fixture {
        file,
        verdict,
        exit,
        capabilities,
        hypervisor,
    }
}

const FIXTURES: &[Fixture] = &[
    fixture(
        "kvm-epyc-guest.json",
        "not-intel",
        1,
        &[],
        Some("KVMKVMKVM"),
    ),
    fixture(
        "epyc-guest-with-svm.json",
        "not-intel",
        1,
        &[],
        Some("KVMKVMKVM"),
    ),
    fixture(
        "kvm-intel-guest-nested-unavailable.json",
        "nested-unavailable",
        1,
        &[],
        Some("KVMKVMKVM"),
    ),
    fixture(
        "hyperv-guest-nested-unavailable.json",
        "nested-unavailable",
        1,
        &[],
        Some("Microsoft Hv"),
    ),
    fixture("skylake-x-no-vmx.json", "no-vmx", 1, &[], None),
    fixture(
        "skylake-x-disabled-by-firmware.json",
        "disabled-by-firmware",
        1,
        SKYLAKE_X,
        None,
    ),
    fixture("skylake-x-in-use.json", "in-use", 1, SKYLAKE_X, None),
    fixture("skylake-x-undetermined.json", "undetermined", 2, &[], None),
    // A processor that reports VMX and faults on IA32_FEATURE_CONTROL: its
    // own report rules VMXON out (Linux treats it as VMX unusable).
    fixture(
        "skylake-x-feature-control-faulted.json",
        "vmx-unusable",
        1,
        &[],
        None,
    ),
    fixture("skylake-x-ready.json", "ready", 0, SKYLAKE_X, None),
    fixture("skylake-x-unlocked.json", "ready", 0, SKYLAKE_X, None),
    // Captured by the e2e kernel's dump scenario (`cargo xtask e2e --dump`)
    // on Bochs 2.7: real emulated values, every processor.
    fixture("bochs-corei7_skylake_x.json", "ready", 0, SKYLAKE_X, None),
    fixture(
        "bochs-corei7_skylake_x-unlocked.json",
        "ready",
        0,
        SKYLAKE_X,
        None,
    ),
    fixture("bochs-tigerlake.json", "ready", 0, TIGERLAKE, None),
    fixture("bochs-corei7_haswell_4770.json", "ready", 0, HASWELL, None),
    fixture("bochs-ryzen.json", "not-intel", 1, &[], None),
    // The Linux facts (`"linux"` keys) deciding without the MSRs.
    fixture(
        "linux-kvm-enabled-at-load.json",
        "in-use",
        1,
        SKYLAKE_X,
        None,
    ),
    fixture(
        "linux-vmx-hidden-by-firmware.json",
        "disabled-by-firmware",
        1,
        &[],
        None,
    ),
    fixture("linux-kernel-enabled-vmx.json", "ready", 0, SKYLAKE_X, None),
    fixture("linux-old-kernel.json", "undetermined", 2, &[], None),
    fixture(
        "linux-kvm-loaded-at-first-vm.json",
        "ready",
        0,
        SKYLAKE_X,
        None,
    ),
    fixture("mixed-vendors.json", "not-intel", 1, &[], None),
];

fn path(file: &str) -> PathBuf {
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

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_fixture_replays_to_its_verdict_capabilities_and_exit_code() {
    for f in FIXTURES {
        let file = path(f.file);
        let output = run(&["check", "--json", "--replay", file.to_str().unwrap()]);
        assert_eq!(
            output.status.code(),
            Some(f.exit),
            "{}: {}",
            f.file,
            stderr(&output)
        );
        let report = json(&output);
        assert_eq!(report["format"], "vmx-report/1", "{}", f.file);
        assert_eq!(report["verdict"], f.verdict, "{}", f.file);
        assert_eq!(
            report["capabilities"],
            serde_json::json!(f.capabilities),
            "{}",
            f.file
        );
        assert_eq!(
            report["hypervisor"],
            serde_json::json!(f.hypervisor),
            "{}",
            f.file
        );
        if f.file != "mixed-vendors.json" {
            let vendor = report["vendor"].as_str().unwrap();
            assert_eq!(vendor.len(), 12, "{}", f.file);
        }
        let cpus = report["cpus"].as_array().unwrap();
        assert!(!cpus.is_empty());
        assert!(
            cpus.iter().any(|c| c["verdict"] == f.verdict),
            "{}: the overall verdict is some processor's",
            f.file
        );
        assert!(!report["remedy"].as_str().unwrap().is_empty());

        // The text report says the same, verdict first, with the same exit code.
        let text = run(&["--replay", file.to_str().unwrap()]);
        assert_eq!(text.status.code(), Some(f.exit), "{}", f.file);
        let first = String::from_utf8_lossy(&text.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            first.starts_with(&format!("{}:", f.verdict.to_ascii_uppercase())),
            "{}: {first}",
            f.file
        );
    }
}

#[test]
fn every_verdict_has_a_fixture() {
    for verdict in vmx_core::Verdict::ALL {
        assert!(
            FIXTURES.iter().any(|f| f.verdict == verdict.name()),
            "no fixture for {verdict}"
        );
    }
}

#[test]
fn the_overall_verdict_is_the_first_in_order_that_any_processor_has() {
    let output = run(&[
        "--json",
        "--replay",
        path("skylake-x-disabled-by-firmware.json")
            .to_str()
            .unwrap(),
    ]);
    let report = json(&output);
    let verdicts: Vec<_> = report["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(verdicts, ["ready", "disabled-by-firmware"]);
    assert_eq!(report["verdict"], "disabled-by-firmware");
    assert_eq!(report["cpus"][1]["feature_control"]["raw"], "0x1");
    assert_eq!(report["cpus"][1]["feature_control"]["locked"], true);
    assert_eq!(
        report["cpus"][1]["feature_control"]["vmx_outside_smx"],
        false
    );
}

#[test]
fn decoded_fields_are_vmx_cores() {
    let output = run(&[
        "--json",
        "--replay",
        path("skylake-x-in-use.json").to_str().unwrap(),
    ]);
    let cpu = &json(&output)["cpus"][0];
    assert_eq!(cpu["cr4"], "0x2020");
    assert_eq!(cpu["cr4_vmxe"], true);
    let basic = &cpu["vmx_basic"];
    assert_eq!(basic["raw"], "0xd810000000002b");
    assert_eq!(basic["revision_id"], "0x2b");
    assert_eq!(basic["region_size"], 4096);
    assert_eq!(basic["memory_type_name"], "write-back");
    assert_eq!(basic["true_controls"], true);
    assert_eq!(basic["usable"], true);
}

#[test]
fn reasons_name_the_cause() {
    // The text report, its wrapped lines joined again.
    let text = |file: &str| {
        let output = run(&["--replay", path(file).to_str().unwrap()]);
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let kvm = text("kvm-intel-guest-nested-unavailable.json");
    assert!(
        kvm.contains("Linux KVM") && kvm.contains("nested=1"),
        "{kvm}"
    );
    let hyperv = text("hyperv-guest-nested-unavailable.json");
    for word in ["Hyper-V", "VBS", "HVCI", "WSL2"] {
        assert!(hyperv.contains(word), "{word}: {hyperv}");
    }
    let svm = text("epyc-guest-with-svm.json");
    assert!(svm.contains("AMD-V (SVM)"), "{svm}");
    let unlocked = text("skylake-x-unlocked.json");
    assert!(
        unlocked.contains("unlocked") && unlocked.contains("first use"),
        "{unlocked}"
    );
    let firmware = text("skylake-x-disabled-by-firmware.json");
    assert!(
        firmware.contains("firmware setup") && firmware.contains("power"),
        "{firmware}"
    );
}

#[test]
fn replays_a_dump_from_stdin() {
    let dump = std::fs::read(path("skylake-x-ready.json")).unwrap();
    let mut child = Command::new(BIN)
        .args(["--json", "--replay", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &dump).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json(&output)["verdict"], "ready");
}

fn bad_dump(name: &str, text: &str) -> Output {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    run(&["--replay", file.to_str().unwrap()])
}

#[test]
fn malformed_dumps_exit_65_naming_the_bad_field() {
    let good = std::fs::read_to_string(path("skylake-x-ready.json")).unwrap();
    let cases = [
        (
            good.replacen(r#""0x3a": "0x5""#, r#""0x3a": 5"#, 1),
            r#"cpus[0].msrs."0x3a": not a hex string"#,
        ),
        (
            good.replacen(r#""format": "vmx-dump/1""#, r#""format": "vmx-dump/9""#, 1),
            "format: must be",
        ),
        (
            good.replacen(r#""eax": "0x50654""#, r#""eax": "0x1000000000""#, 1),
            "cpus[0].cpuid[1].eax: 0x1000000000 does not fit in 32 bits",
        ),
        (
            good.replacen(r#""cpu": 1"#, r#""cpu": 0"#, 1),
            "cpus[1].cpu: processor 0 is listed twice",
        ),
        (
            "{\"format\": \"vmx-dump/1\"".to_owned(),
            "$: not valid JSON",
        ),
        (String::new(), "$: not valid JSON"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let output = bad_dump(&format!("bad-{i}.json"), text);
        assert_eq!(output.status.code(), Some(65), "{expected}");
        let err = stderr(&output);
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(
            err.contains("vmx-check dump -o FILE"),
            "says what to do: {err}"
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn an_unreadable_dump_exits_65() {
    let output = run(&["--replay", "/nonexistent/dump.json"]);
    assert_eq!(output.status.code(), Some(65));
    assert!(stderr(&output).contains("/nonexistent/dump.json"));
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &["--bogus"][..],
        &["check", "--replay"],
        &["dump", "--json"],
        &["--json", "dump"],
        &["frobnicate"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        assert!(!stderr(&output).is_empty());
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}

/// The text report, its wrapped lines joined again.
fn text(file: &str) -> String {
    let output = run(&["--replay", path(file).to_str().unwrap()]);
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn linux_facts_say_what_decided() {
    let kvm = text("linux-kvm-enabled-at-load.json");
    for words in [
        "enable_virt_at_load=Y",
        "kvm.enable_virt_at_load=0",
        "rmmod kvm_intel",
        "kvm_intel's nested setting is Y",
    ] {
        assert!(kvm.contains(words), "{words}: {kvm}");
    }
    let hidden = text("linux-vmx-hidden-by-firmware.json");
    assert!(
        hidden.contains("reason inferred:") && hidden.contains("5.6"),
        "{hidden}"
    );
    let ready = text("linux-kernel-enabled-vmx.json");
    assert!(
        ready.contains("checked IA32_FEATURE_CONTROL at boot")
            && ready.contains("CR4.VMXE cannot be read from user mode"),
        "{ready}"
    );
    let old = text("linux-old-kernel.json");
    assert!(old.contains("before 5.6"), "{old}");
    let first_vm = text("linux-kvm-loaded-at-first-vm.json");
    assert!(first_vm.contains("only while a VM runs"), "{first_vm}");
    assert!(first_vm.contains("nested setting is N"), "{first_vm}");
}

#[test]
fn dumps_without_linux_facts_decide_as_before() {
    // The same values with and without the `"linux"` keys: only the keys differ.
    let with = std::fs::read_to_string(path("linux-kernel-enabled-vmx.json")).unwrap();
    let mut dump: Value = serde_json::from_str(&with).unwrap();
    dump.as_object_mut().unwrap().remove("linux");
    for cpu in dump["cpus"].as_array_mut().unwrap() {
        cpu.as_object_mut().unwrap().remove("linux");
    }
    let output = bad_dump("without-linux.json", &dump.to_string());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("UNDETERMINED:"));
}

#[test]
fn mixed_machines_name_the_deciding_processors_and_what_differs() {
    let mixed = text("mixed-vendors.json");
    assert!(
        mixed.contains("reason processor 1 of 2: the vendor is AuthenticAMD"),
        "{mixed}"
    );
    assert!(
        mixed.contains(
            "vendor differs between processors: GenuineIntel (processor 0); AuthenticAMD \
             (processor 1)"
        ),
        "{mixed}"
    );
    assert!(
        mixed.contains("model differs between processors"),
        "{mixed}"
    );
    let report = json(&run(&[
        "--json",
        "--replay",
        path("mixed-vendors.json").to_str().unwrap(),
    ]));
    assert_eq!(report["vendor"], Value::Null, "not processor 0's");
    assert_eq!(report["cpus"][1]["vendor"], "AuthenticAMD");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .starts_with("processor 1 of 2: ")
    );
    let firmware = text("skylake-x-disabled-by-firmware.json");
    assert!(firmware.contains("reason processor 1 of 2: IA32_FEATURE_CONTROL = 0x1"));
    // Every processor with the verdict: no prefix.
    assert!(text("skylake-x-ready.json").contains("reason VMX is reported"));
}
