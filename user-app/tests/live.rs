//! This machine, live: the verdict must be what its CPUID implies, and a
//! dump of it must replay to the same report.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vmx-check");

fn signature(words: [u32; 3]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

fn check_json(args: &[&str]) -> (Option<i32>, Value) {
    let output = Command::new(BIN).args(args).output().unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap();
    (output.status.code(), report)
}

/// Independent of vmx-core's decoding: the raw CPUID bits, read here.
#[test]
fn the_live_verdict_is_what_cpuid_implies() {
    let leaf0 = vmx_arch::cpuid(0, 0);
    let vendor = signature([leaf0.ebx, leaf0.edx, leaf0.ecx]);
    let ecx = vmx_arch::cpuid(1, 0).ecx;
    let (vmx, hypervisor_bit) = (ecx & (1 << 5) != 0, ecx & (1 << 31) != 0);
    let (code, report) = check_json(&["check", "--json"]);

    assert_eq!(report["vendor"], vendor.as_str());
    if hypervisor_bit {
        let leaf = vmx_arch::cpuid(0x4000_0000, 0);
        let hypervisor = signature([leaf.ebx, leaf.ecx, leaf.edx]);
        assert_eq!(report["hypervisor"], hypervisor.as_str());
    } else {
        assert_eq!(report["hypervisor"], Value::Null);
    }
    let expected = if vendor != "GenuineIntel" {
        Some("not-intel")
    } else if !vmx && hypervisor_bit {
        Some("nested-unavailable")
    } else if !vmx {
        Some("no-vmx")
    } else {
        // VMX set: the MSRs decide (undetermined without the msr module).
        None
    };
    match expected {
        Some(verdict) => {
            assert_eq!(report["verdict"], verdict);
            assert_eq!(code, Some(1));
        }
        None => assert!(
            ["disabled-by-firmware", "in-use", "undetermined", "ready"]
                .contains(&report["verdict"].as_str().unwrap())
        ),
    }
    // This development machine is a KVM guest without VMX: say so, by name.
    if hypervisor_bit && !vmx && vendor == "GenuineIntel" {
        assert_eq!(report["verdict"], "nested-unavailable");
        assert_eq!(report["hypervisor"], "KVMKVMKVM");
    }
    assert!(!report["cpus"].as_array().unwrap().is_empty());
}

#[test]
fn a_dump_of_this_machine_replays_to_the_same_report() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("live-dump.json");
    let status = Command::new(BIN)
        .args(["dump", "-o", file.to_str().unwrap()])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let (live_code, mut live) = check_json(&["--json"]);
    let (replay_code, mut replay) = check_json(&["--json", "--replay", file.to_str().unwrap()]);
    assert_eq!(live_code, replay_code);
    for report in [&mut live, &mut replay] {
        let object = report.as_object_mut().unwrap();
        object.remove("source");
        object.remove("notes");
    }
    assert_eq!(live, replay);
}
