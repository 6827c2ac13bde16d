//! The Linux backend against files laid out like the msr driver's
//! `/dev/cpu/N/msr`: the value of MSR `m` is the 8 bytes at offset `m`.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use user_app::backend::Machine;
use user_app::backend::linux::{LinuxCpu, LinuxMachine, LinuxPaths, parse_cpu_list};
use user_app::dump::{Dump, HostLinux};
use vmx_core::diagnosis::{MsrRead, Observe};
use vmx_core::linux_facts::KvmIntel;

fn msr_root(name: &str, msrs: &[(u32, u64)]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    for cpu in 0..2 {
        let dir = root.join(cpu.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        // A sparse file: the MSR addresses are its offsets.
        let file = File::create(dir.join("msr")).unwrap();
        for &(msr, value) in msrs {
            file.write_all_at(&value.to_le_bytes(), u64::from(msr))
                .unwrap();
        }
    }
    root
}

#[test]
fn reads_msrs_at_their_address() {
    let root = msr_root("msr-values", &[(0x3a, 0x5), (0x480, 0x00d8_1000_0000_002b)]);
    let mut cpu = LinuxCpu::new(&root, 1);
    assert_eq!(cpu.read_msr(0x3a), MsrRead::Value(0x5));
    assert_eq!(cpu.read_msr(0x480), MsrRead::Value(0x00d8_1000_0000_002b));
    // Within the file but never written: the sparse hole reads as 0.
    assert_eq!(cpu.read_msr(0x100), MsrRead::Value(0));
    assert_eq!(cpu.note, None);
    assert_eq!((cpu.cr0(), cpu.cr4()), (None, None));
    assert!(cpu.cpuid(0, 0).is_some());
}

#[test]
fn a_missing_device_is_unavailable_with_a_note_that_says_what_to_do() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-msr-module");
    let mut cpu = LinuxCpu::new(&root, 0);
    assert_eq!(cpu.read_msr(0x3a), MsrRead::Unavailable);
    assert_eq!(cpu.read_msr(0x480), MsrRead::Unavailable);
    let note = cpu.note.unwrap();
    assert!(
        note.contains("modprobe msr") && note.contains("root"),
        "{note}"
    );
    assert!(note.contains("no-msr-module/0/msr"), "{note}");
}

#[test]
fn beyond_the_end_of_the_file_is_unavailable() {
    let root = msr_root("msr-short", &[(0x3a, 0x5)]);
    let mut cpu = LinuxCpu::new(&root, 0);
    assert_eq!(cpu.read_msr(0x480), MsrRead::Unavailable);
    assert!(cpu.note.is_some());
}

#[test]
fn the_machine_observes_each_processor_and_restores_affinity() {
    let root = msr_root("msr-machine", &[(0x3a, 0x5)]);
    let before = std::thread::available_parallelism().unwrap();
    let mut machine = LinuxMachine::with_msr_root(&root);
    let cpus = machine.processors().unwrap();
    let mut seen = Vec::new();
    for &cpu in &cpus {
        machine
            .observe(cpu, &mut |o| seen.push((cpu, o.read_msr(0x3a))))
            .unwrap();
    }
    machine.finish().unwrap();
    assert_eq!(seen.len(), cpus.len());
    for (cpu, read) in seen {
        // The files exist for processors 0 and 1 only.
        let expected = if cpu < 2 {
            MsrRead::Value(5)
        } else {
            MsrRead::Unavailable
        };
        assert_eq!(read, expected, "cpu {cpu}");
    }
    assert_eq!(std::thread::available_parallelism().unwrap(), before);
    assert!(machine.source().contains("msr-machine/N/msr"));
}

/// A machine's files laid out under `root`: online processors, cpuinfo,
/// `/sys/module`, `/proc/modules` and no `/dev/kvm`.
fn machine_files(name: &str, online: &str, kvm_intel: bool, modules: &str) -> LinuxPaths {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("sys/module/kvm/parameters")).unwrap();
    std::fs::write(root.join("online"), format!("{online}\n")).unwrap();
    // From Linux 6.1 on a Skylake-SP, trimmed: processor 1 has no vmx flags.
    std::fs::write(
        root.join("cpuinfo"),
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme vmx smx est\n\
         vmx flags\t: vnmi preemption_timer ept vpid\n\n\
         processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme smx est\n\n",
    )
    .unwrap();
    std::fs::write(
        root.join("sys/module/kvm/parameters/enable_virt_at_load"),
        "Y\n",
    )
    .unwrap();
    if kvm_intel {
        std::fs::create_dir_all(root.join("sys/module/kvm_intel/parameters")).unwrap();
        std::fs::write(root.join("sys/module/kvm_intel/parameters/nested"), "Y\n").unwrap();
        std::fs::write(root.join("sys/module/kvm_intel/initstate"), "live\n").unwrap();
    }
    std::fs::write(root.join("modules"), modules).unwrap();
    LinuxPaths {
        msr_root: root.join("no-msr"),
        online: root.join("online"),
        cpuinfo: root.join("cpuinfo"),
        sys_module: root.join("sys/module"),
        proc_modules: root.join("modules"),
        dev_kvm: root.join("dev-kvm"),
    }
}

#[test]
fn the_kernels_facts_go_into_the_dump() {
    let paths = machine_files(
        "facts-loaded",
        "0-1",
        true,
        "kvm_intel 409600 0 - Live 0x0\nvboxdrv 696320 2 vboxnetadp, Live 0x0\n",
    );
    let mut machine = LinuxMachine::with_paths(paths);
    let mut cpus = machine.processors().unwrap();
    cpus.sort_unstable();
    assert_eq!(cpus, [0, 1], "every online processor, in any order");
    let host = machine.host_linux().unwrap();
    assert_eq!(
        host,
        HostLinux {
            kvm_intel: Some(KvmIntel::Loaded),
            kvm_intel_nested: Some("Y".into()),
            kvm_enable_virt_at_load: Some("Y".into()),
        }
    );
    let cpu0 = machine.cpu_linux(0).unwrap();
    assert_eq!(cpu0.cpuinfo_flags.as_deref(), Some("fpu vme vmx smx est"));
    assert_eq!(
        cpu0.cpuinfo_vmx_flags.as_deref(),
        Some("vnmi preemption_timer ept vpid")
    );
    let cpu1 = machine.cpu_linux(1).unwrap();
    assert_eq!(cpu1.cpuinfo_vmx_flags, None);
    let notes = machine.notes().join("\n");
    assert!(notes.contains("dev-kvm does not exist"), "{notes}");
    assert!(notes.contains("vboxdrv (VirtualBox) is loaded"), "{notes}");
    assert!(!notes.contains("vmmon"), "{notes}");
}

#[test]
fn an_unreadable_cpuinfo_is_no_fact_and_the_source_says_so() {
    let paths = machine_files("facts-no-cpuinfo", "0", false, "");
    std::fs::remove_file(&paths.cpuinfo).unwrap();
    let mut machine = LinuxMachine::with_paths(paths);
    machine.processors().unwrap();
    assert_eq!(machine.cpu_linux(0), None);
    assert!(
        machine.source().contains("cpuinfo unreadable"),
        "{}",
        machine.source()
    );
}

#[test]
fn kvm_intel_not_loaded_and_no_nested_file() {
    let paths = machine_files("facts-not-loaded", "0", false, "");
    let machine = LinuxMachine::with_paths(paths);
    let host = machine.host_linux().unwrap();
    assert_eq!(host.kvm_intel, Some(KvmIntel::NotLoaded));
    assert_eq!(host.kvm_intel_nested, None);
    assert_eq!(host.kvm_enable_virt_at_load.as_deref(), Some("Y"));
}

#[test]
fn online_processors_are_checked_and_unreachable_ones_named() {
    // Processor 1000 is online in this file but beyond any thread's reach here.
    let paths = machine_files("facts-unreachable", "0,1000", false, "");
    let mut machine = LinuxMachine::with_paths(paths);
    let (report, dump) = user_app::diagnose_machine(&mut machine).unwrap();
    assert_eq!(dump.cpus.iter().map(|c| c.cpu).collect::<Vec<_>>(), [0]);
    let notes = report.notes.join("\n");
    assert!(
        notes.contains("1 of the 2 online processors could not be reached")
            && notes.contains("not checked: 1000"),
        "{notes}"
    );
    // What the kernel said is in the dump, so a replay decides alike.
    assert!(dump.linux.is_some() && dump.cpus[0].linux.is_some());
    let replayed = user_app::diagnose_dump(&Dump::parse(dump.to_json().as_bytes()).unwrap());
    assert_eq!(replayed.verdict(), report.verdict());
    assert!(!report.source.contains("no-msr/N/msr"), "{}", report.source);
    assert!(report.source.contains("no MSR read"), "{}", report.source);
}

#[test]
fn a_dump_says_which_online_processors_it_lacks() {
    // A replay must not show fewer processors silently: the dump itself
    // says which online ones were not reached.
    let paths = machine_files("facts-unreachable-dump", "0,1000", false, "");
    let mut machine = LinuxMachine::with_paths(paths);
    let (_, dump) = user_app::diagnose_machine(&mut machine).unwrap();
    let replayed = user_app::diagnose_dump(&Dump::parse(dump.to_json().as_bytes()).unwrap());
    let text = replayed.to_text();
    assert!(
        dump.source.contains("not reached") && dump.source.contains("1000"),
        "{}",
        dump.source
    );
    assert!(text.contains("1000"), "{text}");
}

#[test]
fn cpu_lists_parse_as_the_kernel_writes_them() {
    assert_eq!(
        parse_cpu_list("0-3,5,7-8\n"),
        Some(vec![0, 1, 2, 3, 5, 7, 8])
    );
    assert_eq!(parse_cpu_list("0"), Some(vec![0]));
    for bad in ["", "a", "3-1", "0-", "0-99999999", "1,,2"] {
        assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
    }
}

/// Under `taskset -c 1` every online processor is still checked.
#[test]
fn a_restricted_affinity_still_checks_every_online_processor() {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let expected = parse_cpu_list(&online).unwrap();
    let Some(&last) = expected.last() else {
        return;
    };
    let output = std::process::Command::new("taskset")
        .args([
            "-c",
            &last.to_string(),
            env!("CARGO_BIN_EXE_vmx-check"),
            "--json",
        ])
        .output();
    let Ok(output) = output else {
        panic!("taskset (util-linux) is needed for this test");
    };
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cpus: Vec<u64> = report["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cpu"].as_u64().unwrap())
        .collect();
    assert_eq!(
        cpus,
        expected.iter().map(|&c| u64::from(c)).collect::<Vec<_>>()
    );
}
