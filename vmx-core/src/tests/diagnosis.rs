//! The readiness diagnosis against fixtures built from emulated and real
//! processors.

use std::collections::BTreeMap;
use std::vec::Vec;

use crate::capabilities::tests::skylake_x;
use crate::cpu::{Cpu, CpuidResult};
use crate::cpuid::tests::leaf0;
use crate::diagnosis::{MsrRead, Observation, Observe, Recorder, Verdict, diagnose};
use crate::sim::SimCpu;

/// A processor's raw values, answered like a replay: a missing CPUID leaf
/// is "not captured", a missing MSR "not read".
#[derive(Debug, Clone, Default)]
struct Fixture {
    cpuid: BTreeMap<u32, CpuidResult>,
    msrs: BTreeMap<u32, Option<u64>>,
    cr0: Option<u64>,
    cr4: Option<u64>,
    asked: Vec<u32>,
}

impl Fixture {
    /// Bochs corei7_skylake_x in a GRUB-booted kernel: the simulated
    /// processor's CPUID and control registers, the emulator's MSRs.
    fn skylake() -> Self {
        let mut sim = SimCpu::skylake();
        let mut f = Self::default();
        for leaf in [0, 1, 0x8000_0000, 0x8000_0008] {
            f.cpuid.insert(leaf, sim.cpuid(leaf, 0));
        }
        for msr in [
            0x3a, 0x480, 0x481, 0x482, 0x486, 0x487, 0x488, 0x489, 0x48b, 0x48c, 0x491,
        ] {
            f.msrs.insert(msr, skylake_x(msr));
        }
        f.cr0 = Some(sim.cr0);
        f.cr4 = Some(sim.cr4);
        f
    }

    /// A KVM guest without nested VT-x: the development machine's leaf 1
    /// (hypervisor bit set, VMX clear) and KVM signature, read with CPUID
    /// there, under an Intel vendor string (that machine itself is an AMD
    /// guest, see `this_machine_is_an_amd_kvm_guest`).
    fn kvm_guest_without_vmx() -> Self {
        let mut f = Self::default();
        f.cpuid.insert(0, leaf0(0x10, b"GenuineIntel"));
        f.cpuid.insert(
            1,
            CpuidResult {
                eax: 0xa0_0f11,
                ebx: 0x2_0800,
                ecx: 0xfffa_3203,
                edx: 0x178b_fbff,
            },
        );
        f.cpuid.insert(
            0x4000_0000,
            CpuidResult {
                eax: 0x4000_0001,
                ebx: 0x4b4d_564b,
                ecx: 0x564b_4d56,
                edx: 0x4d,
            },
        );
        f
    }
}

impl Observe for Fixture {
    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> Option<CpuidResult> {
        self.cpuid.get(&leaf).copied()
    }

    fn read_msr(&mut self, msr: u32) -> MsrRead {
        self.asked.push(msr);
        match self.msrs.get(&msr) {
            Some(Some(value)) => MsrRead::Value(*value),
            Some(None) => MsrRead::Faulted,
            None => MsrRead::Unavailable,
        }
    }

    fn cr0(&mut self) -> Option<u64> {
        self.cr0
    }

    fn cr4(&mut self) -> Option<u64> {
        self.cr4
    }
}

#[test]
fn bochs_skylake_x_is_ready_with_its_capabilities() {
    let mut fixture = Fixture::skylake();
    let report = diagnose(&mut fixture);
    assert_eq!(report.verdict, Verdict::Ready);
    assert!(report.capability_names().linux_names().any(|n| n == "ept"));
    assert_eq!(report.capabilities.unwrap().basic.revision_id(), 0x2b);
    // The true-controls MSRs exist (BASIC bit 55) and were asked for; they
    // are not in the fixture, so they read as not available.
    assert!(fixture.asked.contains(&0x48d));
    assert_eq!(report.capabilities.unwrap().true_pinbased, None);
}

#[test]
fn each_verdict_from_the_value_that_decides_it() {
    let amd = {
        let mut f = Fixture::skylake();
        f.cpuid.insert(0, leaf0(0x10, b"AuthenticAMD"));
        f
    };
    let no_vmx = {
        let mut f = Fixture::skylake();
        f.cpuid.get_mut(&1).unwrap().ecx &= !(1 << 5);
        f
    };
    let with = |msr: u32, value: Option<u64>| {
        let mut f = Fixture::skylake();
        f.msrs.insert(msr, value);
        f
    };
    let unread = {
        let mut f = Fixture::skylake();
        f.msrs.remove(&0x3a);
        f
    };
    let in_use = {
        let mut f = Fixture::skylake();
        f.cr4 = Some(0x2020);
        f
    };
    let centaur_no_vmx = {
        let mut f = Fixture::skylake();
        f.cpuid.insert(0, leaf0(0x10, b"CentaurHauls"));
        f.cpuid.get_mut(&1).unwrap().ecx &= !(1 << 5);
        f
    };
    let zhaoxin = {
        let mut f = Fixture::skylake();
        f.cpuid.insert(0, leaf0(0x10, b"  Shanghai  "));
        f
    };
    let pke_forbidden = {
        // A nested hypervisor whose FIXED1 lacks PKE while its guest has it set.
        let mut f = Fixture::skylake();
        f.cr4 = Some(0x40_0020);
        f
    };
    let cases = [
        (amd, Verdict::NotIntel),
        (centaur_no_vmx, Verdict::NoVmx),
        (zhaoxin, Verdict::Ready),
        (Fixture::kvm_guest_without_vmx(), Verdict::NestedUnavailable),
        (no_vmx, Verdict::NoVmx),
        (with(0x3a, Some(0x1)), Verdict::DisabledByFirmware),
        (with(0x3a, Some(0x3)), Verdict::DisabledByFirmware),
        (in_use, Verdict::InUse),
        (with(0x3a, None), Verdict::VmxUnusable),
        (with(0x480, None), Verdict::VmxUnusable),
        (
            with(0x480, Some(0x00d8_0000_0000_002b)),
            Verdict::VmxUnusable,
        ),
        (
            with(0x480, Some(0x00d8_2000_0000_002b)),
            Verdict::VmxUnusable,
        ),
        (
            with(0x480, Some(0x00c0_1000_0000_002b)),
            Verdict::VmxUnusable,
        ),
        (
            with(0x480, Some(0x00d8_1000_8000_002b)),
            Verdict::VmxUnusable,
        ),
        (with(0x487, None), Verdict::VmxUnusable),
        (with(0x488, Some(0xa000)), Verdict::VmxUnusable),
        (pke_forbidden, Verdict::VmxUnusable),
        (unread, Verdict::Undetermined),
        (with(0x3a, Some(0x0)), Verdict::Ready),
        (Fixture::skylake(), Verdict::Ready),
    ];
    for (mut fixture, expected) in cases {
        let report = diagnose(&mut fixture);
        assert_eq!(report.verdict, expected, "{report:?}");
        assert!(!report.remedy().is_empty());
        assert!(!std::format!("{}", report.reason()).is_empty());
    }
}

#[test]
fn the_kvm_guest_names_kvm_and_the_nested_remedy() {
    let report = diagnose(&mut Fixture::kvm_guest_without_vmx());
    assert_eq!(report.hypervisor(), Some(crate::cpuid::Hypervisor::Kvm));
    assert!(report.remedy().contains("nested=1"));
    assert!(std::format!("{}", report.reason()).contains("KVMKVMKVM"));
}

#[test]
fn no_msr_is_read_without_vmx_or_on_amd() {
    let mut guest = Fixture::kvm_guest_without_vmx();
    diagnose(&mut guest);
    assert!(guest.asked.is_empty());
}

#[test]
fn unlocked_feature_control_is_ready_with_a_note() {
    let mut f = Fixture::skylake();
    f.msrs.insert(0x3a, Some(0));
    let report = diagnose(&mut f);
    assert_eq!(report.verdict, Verdict::Ready);
    assert!(
        report
            .remedy()
            .contains("locked with VMX enabled on first use")
    );
}

#[test]
fn overall_verdict_is_the_first_in_contract_order() {
    use Verdict::*;
    assert_eq!(Verdict::overall([Ready, InUse, Undetermined]), Some(InUse));
    assert_eq!(
        Verdict::overall([Ready, NestedUnavailable, NotIntel]),
        Some(NotIntel)
    );
    assert_eq!(Verdict::overall([]), None);
    let names: Vec<_> = Verdict::ALL.iter().map(|v| v.name()).collect();
    assert_eq!(
        names,
        [
            "not-intel",
            "nested-unavailable",
            "no-vmx",
            "disabled-by-firmware",
            "in-use",
            "vmx-unusable",
            "undetermined",
            "ready"
        ]
    );
    for v in Verdict::ALL {
        assert_eq!(Verdict::from_name(v.name()), Some(v));
    }
}

#[test]
fn a_recording_replays_to_the_same_report() {
    let mut recorded = Vec::new();
    let live = diagnose(&mut Recorder::new(Fixture::skylake(), |o| recorded.push(o)));
    let mut replay = Fixture::default();
    for observation in &recorded {
        match *observation {
            Observation::Cpuid { leaf, result, .. } => {
                replay.cpuid.insert(leaf, result);
            }
            Observation::Msr { msr, read } => {
                replay.msrs.insert(msr, read.value());
            }
            Observation::Cr0(v) => replay.cr0 = Some(v),
            Observation::Cr4(v) => replay.cr4 = Some(v),
        }
    }
    assert_eq!(diagnose(&mut replay), live);
    // Not-read MSRs are not recorded; read ones are.
    assert!(
        recorded
            .iter()
            .any(|o| matches!(o, Observation::Msr { msr: 0x3a, .. }))
    );
    assert!(
        !recorded
            .iter()
            .any(|o| matches!(o, Observation::Msr { msr: 0x48d, .. }))
    );
}

/// The development machine exactly as CPUID reads there: an AMD processor
/// under KVM. Vendor comes first in the verdict order.
#[test]
fn this_machine_is_an_amd_kvm_guest() {
    let mut f = Fixture::kvm_guest_without_vmx();
    f.cpuid.insert(
        0,
        CpuidResult {
            eax: 0x10,
            ebx: 0x6874_7541,
            ecx: 0x444d_4163,
            edx: 0x6974_6e65,
        },
    );
    f.cpuid.insert(
        0x8000_0000,
        CpuidResult {
            eax: 0x8000_0022,
            ebx: 0x6874_7541,
            ecx: 0x444d_4163,
            edx: 0x6974_6e65,
        },
    );
    f.cpuid.insert(
        0x8000_0008,
        CpuidResult {
            eax: 0x30_3030,
            ebx: 0x130a_d205,
            ecx: 0x7001,
            edx: 0,
        },
    );
    let report = diagnose(&mut f);
    assert_eq!(report.verdict, Verdict::NotIntel);
    assert_eq!(report.hypervisor(), Some(crate::cpuid::Hypervisor::Kvm));
    assert_eq!(report.identity.unwrap().physical_address_width, 0x30);
    assert!(f.asked.is_empty(), "no MSR read on AMD");
}
