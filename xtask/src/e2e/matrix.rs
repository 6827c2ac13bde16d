//! The machines and scenarios `cargo xtask e2e` boots the test kernel on.

use std::fmt;

/// The firmware a Bochs machine boots: it decides IA32_FEATURE_CONTROL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// Bochs' own BIOS (`BIOS-bochs-latest`, package bochsbios): locks
    /// IA32_FEATURE_CONTROL with VMX enabled (0x5).
    BochsBios,
    /// SeaBIOS (`bios.bin`, package seabios): leaves IA32_FEATURE_CONTROL
    /// unlocked (0x0), so that vmx-core locks it on first use. (Bochs'
    /// `BIOS-bochs-legacy` leaves it unlocked too, but has no ACPI tables,
    /// which the kernel needs to find the processors.)
    SeaBios,
}

impl Firmware {
    /// The ROM image's file name, for reports.
    pub fn rom_name(self) -> &'static str {
        match self {
            Self::BochsBios => "BIOS-bochs-latest",
            Self::SeaBios => "SeaBIOS bios.bin",
        }
    }
}

/// An emulated machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// Bochs with a CPU model (`bochs-bin -help cpu` lists them).
    Bochs {
        /// `cpu: model=`.
        model: String,
        /// `cpu: count=`.
        cpus: u32,
        /// `romimage:`.
        firmware: Firmware,
    },
    /// QEMU's TCG (software) CPU with an Intel vendor string and no VMX: a
    /// guest of a hypervisor that does not expose nested VT-x.
    QemuTcg {
        /// `-smp`.
        cpus: u32,
    },
}

impl Machine {
    /// How many processors it has.
    pub fn cpus(&self) -> u32 {
        match self {
            Self::Bochs { cpus, .. } | Self::QemuTcg { cpus } => *cpus,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bochs {
                model,
                cpus,
                firmware: Firmware::BochsBios,
            } => write!(f, "bochs-{model}-{cpus}cpu"),
            Self::Bochs {
                model,
                cpus,
                firmware: Firmware::SeaBios,
            } => write!(f, "bochs-{model}-{cpus}cpu-seabios"),
            Self::QemuTcg { cpus } => write!(f, "qemu-tcg-{cpus}cpu"),
        }
    }
}

/// The kernel's scenarios (`e2e-kernel/src/scenario.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Enter and leave on every processor, or, when the machine's expected
    /// diagnosis (a vmx-core verdict name) is not `ready`, see entering
    /// refused.
    EnterLeave {
        /// The verdict the kernel must diagnose.
        expect: &'static str,
    },
    /// CR0 and CR4 bits the VMX fixed bits leave free flipped on every
    /// processor, then enter and leave (kvm-unit-tests' "valid but tweaked
    /// CR0/CR4").
    EnterLeaveFlexible,
    /// `VMfailInvalid` on the last processor, everything rolled back.
    WrongRevisionId,
    /// #UD from VMXON on the last processor, everything rolled back.
    DropVmxe,
    /// #GP from VMXON with CR0.NE clear on the last processor.
    Cr0Ne,
    /// #GP from VMXON with IA32_FEATURE_CONTROL unlocked (SeaBIOS) on the
    /// last processor, first 0x0, then 0x4 (VMX enabled, the lock lost and
    /// caught by vmx-core's read-back); it stays unlocked there.
    VmxonUnlocked,
    /// The lock bit written alone on the last processor (SeaBIOS): caught
    /// by vmx-core's read-back, entering refused after, VMXON past the
    /// check #GP, WRMSR to the locked MSR #GP.
    LockAlone,
    /// VMfailInvalid from VMXON with a misaligned operand.
    MisalignedRegion,
    /// VMfailInvalid from VMXON with an operand beyond the
    /// physical-address width.
    RegionBeyondWidth,
    /// #UD from VMXOFF outside VMX operation.
    VmxoffOutside,
    /// VMfailInvalid from VMXON in VMX root operation, no current VMCS.
    VmxonInRoot,
    /// VMfailValid(15) from VMXON in VMX root operation and VMfailValid(3)
    /// from VMCLEAR of the VMXON region, with a current VMCS.
    VmfailValid,
    /// Entering twice is refused.
    EnterTwice,
    /// Leaving without entering is refused.
    LeaveWithoutEnter,
    /// Enter and leave on a machine whose firmware left
    /// IA32_FEATURE_CONTROL unlocked: it must be 0x0 on every processor
    /// before and 0x5 (locked by vmx-core) after.
    EnterLeaveUnlocked,
    /// The kernel prints what vmx-core's diagnosis reads as a `vmx-dump/1`
    /// document; the runner extracts it and replays it through the
    /// checker (`vmx-check check --replay`).
    Dump {
        /// The verdict the checker must give for the dump.
        expect: &'static str,
    },
}

impl Scenario {
    /// The scenario's name on the kernel command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::EnterLeave { .. } => "enter-leave",
            Self::EnterLeaveFlexible => "enter-leave-flexible",
            Self::WrongRevisionId => "fault-wrong-revision-id",
            Self::DropVmxe => "fault-drop-vmxe",
            Self::Cr0Ne => "fault-cr0-ne",
            Self::VmxonUnlocked => "fault-vmxon-unlocked",
            Self::LockAlone => "fault-lock-alone",
            Self::MisalignedRegion => "fault-misaligned-region",
            Self::RegionBeyondWidth => "fault-region-beyond-width",
            Self::VmxoffOutside => "fault-vmxoff-outside",
            Self::VmxonInRoot => "fault-vmxon-in-root",
            Self::VmfailValid => "fault-vmfail-valid",
            Self::EnterTwice => "fault-enter-twice",
            Self::LeaveWithoutEnter => "fault-leave-without-enter",
            Self::EnterLeaveUnlocked => "enter-leave-unlocked",
            Self::Dump { .. } => "dump",
        }
    }
}

/// One boot of the kernel: a machine and a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Where it runs.
    pub machine: Machine,
    /// What the kernel does.
    pub scenario: Scenario,
}

impl Case {
    /// A unique name, also the case's directory under `target/e2e/`.
    pub fn name(&self) -> String {
        match self.scenario {
            Scenario::EnterLeave { expect } if expect != READY => {
                format!("{}-enter-leave-{expect}", self.machine)
            }
            scenario => format!("{}-{}", self.machine, scenario.name()),
        }
    }

    /// The kernel command line.
    pub fn command_line(&self) -> String {
        match self.scenario {
            Scenario::EnterLeave { expect } => format!("scenario=enter-leave expect={expect}"),
            Scenario::EnterLeaveUnlocked => {
                format!("scenario=enter-leave expect={READY} feature-control=unlocked")
            }
            scenario => format!("scenario={}", scenario.name()),
        }
    }

    /// The file name of this case's dump under `--dump DIR`:
    /// `bochs-<model>.json`, or `bochs-<model>-unlocked.json` when the
    /// firmware left IA32_FEATURE_CONTROL unlocked.
    pub fn dump_file_name(&self) -> String {
        match &self.machine {
            Machine::Bochs {
                model,
                firmware: Firmware::BochsBios,
                ..
            } => format!("bochs-{model}.json"),
            Machine::Bochs {
                model,
                firmware: Firmware::SeaBios,
                ..
            } => format!("bochs-{model}-unlocked.json"),
            Machine::QemuTcg { .. } => format!("{}.json", self.machine),
        }
    }
}

/// The CPU model of a single run when `--cpus` is given without `--model`.
pub const DEFAULT_MODEL: &str = "corei7_skylake_x";

/// vmx-core's verdict for a machine that can enter VMX operation.
const READY: &str = "ready";

/// Bochs' AMD CPU models (`bochs-bin -help cpu`): VT-x is Intel's.
const AMD_MODELS: [&str; 8] = [
    "amd_k6_2_chomper",
    "athlon64_clawhammer",
    "athlon64_venice",
    "turion64_tyler",
    "phenom_8650_toliman",
    "zambezi",
    "trinity_apu",
    "ryzen",
];

/// The diagnosis to expect from a Bochs CPU model when none is given: AMD
/// models are `not-intel`, the others are taken to offer VT-x.
pub fn expected_verdict(model: &str) -> &'static str {
    if AMD_MODELS.contains(&model) {
        "not-intel"
    } else {
        READY
    }
}

fn bochs(model: &str, cpus: u32, scenario: Scenario) -> Case {
    Case {
        machine: Machine::Bochs {
            model: model.to_owned(),
            cpus,
            firmware: Firmware::BochsBios,
        },
        scenario,
    }
}

fn seabios(model: &str, cpus: u32, scenario: Scenario) -> Case {
    Case {
        machine: Machine::Bochs {
            model: model.to_owned(),
            cpus,
            firmware: Firmware::SeaBios,
        },
        scenario,
    }
}

/// The default matrix: enter and leave with 1, 2 and 4 processors on two
/// VT-x models; refusal on an AMD model and on QEMU TCG; the injected
/// failures and refusals on 4 processors, the failure on processor 3 (an
/// application processor), the feature-control ones on SeaBIOS; locking an
/// unlocked IA32_FEATURE_CONTROL; a dump that the checker must find
/// `ready`.
pub fn default_matrix() -> Vec<Case> {
    let ready = Scenario::EnterLeave { expect: READY };
    let mut cases = Vec::new();
    for model in ["corei7_skylake_x", "tigerlake"] {
        for cpus in [1, 2, 4] {
            cases.push(bochs(model, cpus, ready));
        }
    }
    for model in ["corei7_skylake_x", "tigerlake"] {
        cases.push(bochs(model, 2, Scenario::EnterLeaveFlexible));
    }
    cases.push(bochs(
        "ryzen",
        1,
        Scenario::EnterLeave {
            expect: "not-intel",
        },
    ));
    cases.push(Case {
        machine: Machine::QemuTcg { cpus: 2 },
        scenario: Scenario::EnterLeave {
            expect: "nested-unavailable",
        },
    });
    for fault in [
        Scenario::WrongRevisionId,
        Scenario::DropVmxe,
        Scenario::EnterTwice,
        Scenario::LeaveWithoutEnter,
        Scenario::Cr0Ne,
        Scenario::MisalignedRegion,
        Scenario::RegionBeyondWidth,
        Scenario::VmxoffOutside,
        Scenario::VmxonInRoot,
        Scenario::VmfailValid,
    ] {
        cases.push(bochs("corei7_skylake_x", 4, fault));
    }
    for fault in [Scenario::VmxonUnlocked, Scenario::LockAlone] {
        cases.push(seabios("corei7_skylake_x", 4, fault));
    }
    cases.push(seabios("corei7_skylake_x", 2, Scenario::EnterLeaveUnlocked));
    cases.push(bochs(
        "corei7_skylake_x",
        2,
        Scenario::Dump { expect: READY },
    ));
    cases
}

/// The dumps `--dump DIR` writes: two VT-x models of different
/// generations, an older one, an AMD model, and the first with its
/// IA32_FEATURE_CONTROL left unlocked.
pub fn dump_matrix() -> Vec<Case> {
    let dump = |model| Scenario::Dump {
        expect: expected_verdict(model),
    };
    vec![
        bochs("corei7_skylake_x", 2, dump("corei7_skylake_x")),
        bochs("tigerlake", 1, dump("tigerlake")),
        bochs("ryzen", 1, dump("ryzen")),
        bochs("corei7_haswell_4770", 1, dump("corei7_haswell_4770")),
        seabios("corei7_skylake_x", 2, dump("corei7_skylake_x")),
    ]
}

/// A single Bochs enter-leave run (`--model`, `--cpus`, `--expect`).
pub fn single(model: &str, cpus: u32, expect: &'static str) -> Vec<Case> {
    vec![bochs(model, cpus, Scenario::EnterLeave { expect })]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_name_scenario_and_expectation() {
        let case = bochs(
            "ryzen",
            1,
            Scenario::EnterLeave {
                expect: "not-intel",
            },
        );
        assert_eq!(case.command_line(), "scenario=enter-leave expect=not-intel");
        assert_eq!(case.name(), "bochs-ryzen-1cpu-enter-leave-not-intel");
        let fault = bochs("tigerlake", 4, Scenario::DropVmxe);
        assert_eq!(fault.command_line(), "scenario=fault-drop-vmxe");
        assert_eq!(fault.name(), "bochs-tigerlake-4cpu-fault-drop-vmxe");
    }

    #[test]
    fn every_failure_runs_on_four_processors_and_feature_control_ones_on_seabios() {
        let cases = default_matrix();
        for fault in [
            Scenario::Cr0Ne,
            Scenario::MisalignedRegion,
            Scenario::RegionBeyondWidth,
            Scenario::VmxoffOutside,
            Scenario::VmxonInRoot,
            Scenario::VmfailValid,
            Scenario::VmxonUnlocked,
            Scenario::LockAlone,
        ] {
            let case = cases
                .iter()
                .find(|case| case.scenario == fault)
                .unwrap_or_else(|| panic!("{fault:?} is not in the default matrix"));
            assert_eq!(case.machine.cpus(), 4, "{}", case.name());
            let seabios = matches!(
                case.machine,
                Machine::Bochs {
                    firmware: Firmware::SeaBios,
                    ..
                }
            );
            assert_eq!(
                seabios,
                matches!(fault, Scenario::VmxonUnlocked | Scenario::LockAlone),
                "{}",
                case.name()
            );
        }
        let lock = seabios("corei7_skylake_x", 4, Scenario::LockAlone);
        assert_eq!(lock.command_line(), "scenario=fault-lock-alone");
        assert_eq!(
            lock.name(),
            "bochs-corei7_skylake_x-4cpu-seabios-fault-lock-alone"
        );
    }

    #[test]
    fn case_names_are_unique() {
        let cases = default_matrix();
        let mut names: Vec<String> = cases.iter().map(Case::name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
    }

    #[test]
    fn unlocked_and_dump_cases_say_so() {
        let unlocked = seabios("corei7_skylake_x", 2, Scenario::EnterLeaveUnlocked);
        assert_eq!(
            unlocked.command_line(),
            "scenario=enter-leave expect=ready feature-control=unlocked"
        );
        assert_eq!(
            unlocked.name(),
            "bochs-corei7_skylake_x-2cpu-seabios-enter-leave-unlocked"
        );
        let dump = bochs(
            "ryzen",
            1,
            Scenario::Dump {
                expect: "not-intel",
            },
        );
        assert_eq!(dump.command_line(), "scenario=dump");
        assert_eq!(dump.name(), "bochs-ryzen-1cpu-dump");
    }

    #[test]
    fn dump_files_are_named_after_model_and_firmware() {
        let names: Vec<String> = dump_matrix().iter().map(Case::dump_file_name).collect();
        assert_eq!(
            names,
            [
                "bochs-corei7_skylake_x.json",
                "bochs-tigerlake.json",
                "bochs-ryzen.json",
                "bochs-corei7_haswell_4770.json",
                "bochs-corei7_skylake_x-unlocked.json",
            ]
        );
        assert!(
            dump_matrix()
                .iter()
                .all(|case| matches!(case.scenario, Scenario::Dump { .. }))
        );
    }

    #[test]
    fn amd_models_expect_not_intel() {
        assert_eq!(expected_verdict("ryzen"), "not-intel");
        assert_eq!(expected_verdict("corei7_haswell_4770"), "ready");
    }
}
