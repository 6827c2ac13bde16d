//! The Linux backend against files laid out like the msr driver's
//! `/dev/cpu/N/msr`: the value of MSR `m` is the 8 bytes at offset `m`.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use user_app::backend::Machine;
use user_app::backend::linux::{LinuxCpu, LinuxMachine};
use vmx_core::diagnosis::{MsrRead, Observe};

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
