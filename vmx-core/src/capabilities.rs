//! The VMX capability MSRs (SDM Appendix A, "VMX Capability Reporting
//! Facility"), each read only when the SDM says it exists, and the named
//! capabilities in Linux's `vmx flags` vocabulary
//! (`arch/x86/include/asm/vmxfeatures.h`, computed as `feat_ctl.c` does).

use bitflags::bitflags;
use x86::msr::{
    IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1,
    IA32_VMX_ENTRY_CTLS, IA32_VMX_EPT_VPID_CAP, IA32_VMX_EXIT_CTLS, IA32_VMX_MISC,
    IA32_VMX_PINBASED_CTLS, IA32_VMX_PROCBASED_CTLS, IA32_VMX_PROCBASED_CTLS2,
    IA32_VMX_TRUE_ENTRY_CTLS, IA32_VMX_TRUE_EXIT_CTLS, IA32_VMX_TRUE_PINBASED_CTLS,
    IA32_VMX_TRUE_PROCBASED_CTLS, IA32_VMX_VMCS_ENUM, IA32_VMX_VMFUNC,
};

use crate::fixed_bits::FixedBits;
use crate::vmx_basic::VmxBasic;

/// A VMX control capability MSR: bits 31:0 are the allowed 0-settings (a
/// bit set there must be 1), bits 63:32 the allowed 1-settings (a bit clear
/// there must be 0). SDM, "VM-Execution Controls" in Appendix A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlMsr(u64);

impl ControlMsr {
    /// Wraps a value read from the MSR.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Bits 31:0: the controls that must be 1.
    #[must_use]
    pub const fn must_be_one(self) -> u32 {
        self.0 as u32
    }

    /// Bits 63:32: the controls that may be 1.
    #[must_use]
    pub const fn may_be_one(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Whether control `bit` (0..32) may be set to 1.
    #[must_use]
    pub const fn allows(self, bit: u32) -> bool {
        bit < 32 && self.may_be_one() & (1 << bit) != 0
    }

    /// `desired` adjusted to what the processor allows: the must-be-one
    /// bits set, the may-not-be-one bits cleared.
    #[must_use]
    pub const fn adjust(self, desired: u32) -> u32 {
        (desired | self.must_be_one()) & self.may_be_one()
    }
}

/// IA32_VMX_PROCBASED_CTLS3 (0x492): the tertiary processor-based
/// controls. All 64 bits are allowed 1-settings.
pub const IA32_VMX_PROCBASED_CTLS3: u32 = 0x492;
/// IA32_VMX_EXIT_CTLS2 (0x493): the secondary VM-exit controls. All 64
/// bits are allowed 1-settings.
pub const IA32_VMX_EXIT_CTLS2: u32 = 0x493;

/// Primary processor-based control bit 17: activate tertiary controls.
const PROCBASED_TERTIARY: u32 = 17;
/// Primary processor-based control bit 31: activate secondary controls.
const PROCBASED_SECONDARY: u32 = 31;
/// VM-exit control bit 31: activate secondary controls.
const EXIT_SECONDARY: u32 = 31;
/// Secondary control bit 1: enable EPT.
const SECONDARY_EPT: u32 = 1;
/// Secondary control bit 5: enable VPID.
const SECONDARY_VPID: u32 = 5;
/// Secondary control bit 13: enable VM functions.
const SECONDARY_VMFUNC: u32 = 13;

/// Every VMX capability MSR this processor has, read in an order that never
/// touches one that does not exist. A field is `None` when its MSR does not
/// exist on this processor, or could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmxCapabilities {
    /// IA32_VMX_BASIC (0x480).
    pub basic: VmxBasic,
    /// IA32_VMX_PINBASED_CTLS (0x481).
    pub pinbased: Option<ControlMsr>,
    /// IA32_VMX_PROCBASED_CTLS (0x482).
    pub procbased: Option<ControlMsr>,
    /// IA32_VMX_EXIT_CTLS (0x483).
    pub exit: Option<ControlMsr>,
    /// IA32_VMX_ENTRY_CTLS (0x484).
    pub entry: Option<ControlMsr>,
    /// IA32_VMX_MISC (0x485).
    pub misc: Option<u64>,
    /// IA32_VMX_CR0_FIXED0/1 (0x486, 0x487).
    pub cr0_fixed: Option<FixedBits>,
    /// IA32_VMX_CR4_FIXED0/1 (0x488, 0x489).
    pub cr4_fixed: Option<FixedBits>,
    /// IA32_VMX_VMCS_ENUM (0x48A).
    pub vmcs_enum: Option<u64>,
    /// IA32_VMX_PROCBASED_CTLS2 (0x48B): exists only if
    /// IA32_VMX_PROCBASED_CTLS bit 63 is 1.
    pub procbased2: Option<ControlMsr>,
    /// IA32_VMX_EPT_VPID_CAP (0x48C): exists only if secondary controls
    /// exist and EPT (bit 33) or VPID (bit 37) of IA32_VMX_PROCBASED_CTLS2
    /// may be 1.
    pub ept_vpid: Option<u64>,
    /// IA32_VMX_TRUE_PINBASED_CTLS (0x48D): exists only if
    /// IA32_VMX_BASIC bit 55 is 1; likewise the three below.
    pub true_pinbased: Option<ControlMsr>,
    /// IA32_VMX_TRUE_PROCBASED_CTLS (0x48E).
    pub true_procbased: Option<ControlMsr>,
    /// IA32_VMX_TRUE_EXIT_CTLS (0x48F).
    pub true_exit: Option<ControlMsr>,
    /// IA32_VMX_TRUE_ENTRY_CTLS (0x490).
    pub true_entry: Option<ControlMsr>,
    /// IA32_VMX_VMFUNC (0x491): exists only if secondary controls exist
    /// and bit 45 of IA32_VMX_PROCBASED_CTLS2 (enable VM functions) is 1.
    pub vmfunc: Option<u64>,
    /// IA32_VMX_PROCBASED_CTLS3 (0x492): exists only if
    /// IA32_VMX_PROCBASED_CTLS allows the 1-setting of bit 17, "activate
    /// tertiary controls" (SDM Appendix A, "Tertiary Processor-Based
    /// VM-Execution Controls").
    pub procbased3: Option<u64>,
    /// IA32_VMX_EXIT_CTLS2 (0x493): exists only if IA32_VMX_EXIT_CTLS
    /// allows the 1-setting of bit 31, "activate secondary controls" (SDM
    /// Appendix A, "Secondary VM-Exit Controls").
    pub exit2: Option<u64>,
}

impl VmxCapabilities {
    /// Reads the capability MSRs of a processor that reports VMX, given its
    /// IA32_VMX_BASIC. `read` returns `None` for an MSR that could not be
    /// read; it is never asked for an MSR the SDM says does not exist.
    pub fn read(basic: VmxBasic, mut read: impl FnMut(u32) -> Option<u64>) -> Self {
        let pinbased = read(IA32_VMX_PINBASED_CTLS).map(ControlMsr::from_raw);
        let procbased = read(IA32_VMX_PROCBASED_CTLS).map(ControlMsr::from_raw);
        let exit = read(IA32_VMX_EXIT_CTLS).map(ControlMsr::from_raw);
        let entry = read(IA32_VMX_ENTRY_CTLS).map(ControlMsr::from_raw);
        let misc = read(IA32_VMX_MISC);
        let mut pair = |msr0, msr1| Some(FixedBits::new(read(msr0)?, read(msr1)?));
        let cr0_fixed = pair(IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1);
        let cr4_fixed = pair(IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1);
        let vmcs_enum = read(IA32_VMX_VMCS_ENUM);
        let procbased2 = if procbased.is_some_and(|p| p.allows(PROCBASED_SECONDARY)) {
            read(IA32_VMX_PROCBASED_CTLS2).map(ControlMsr::from_raw)
        } else {
            None
        };
        let secondary = |bit| procbased2.is_some_and(|p| p.allows(bit));
        let ept_vpid = if secondary(SECONDARY_EPT) || secondary(SECONDARY_VPID) {
            read(IA32_VMX_EPT_VPID_CAP)
        } else {
            None
        };
        let (true_pinbased, true_procbased, true_exit, true_entry) = if basic.true_controls() {
            (
                read(IA32_VMX_TRUE_PINBASED_CTLS).map(ControlMsr::from_raw),
                read(IA32_VMX_TRUE_PROCBASED_CTLS).map(ControlMsr::from_raw),
                read(IA32_VMX_TRUE_EXIT_CTLS).map(ControlMsr::from_raw),
                read(IA32_VMX_TRUE_ENTRY_CTLS).map(ControlMsr::from_raw),
            )
        } else {
            (None, None, None, None)
        };
        let vmfunc = if secondary(SECONDARY_VMFUNC) {
            read(IA32_VMX_VMFUNC)
        } else {
            None
        };
        let procbased3 = if procbased.is_some_and(|p| p.allows(PROCBASED_TERTIARY)) {
            read(IA32_VMX_PROCBASED_CTLS3)
        } else {
            None
        };
        let exit2 = if exit.is_some_and(|e| e.allows(EXIT_SECONDARY)) {
            read(IA32_VMX_EXIT_CTLS2)
        } else {
            None
        };
        Self {
            basic,
            pinbased,
            procbased,
            exit,
            entry,
            misc,
            cr0_fixed,
            cr4_fixed,
            vmcs_enum,
            procbased2,
            ept_vpid,
            true_pinbased,
            true_procbased,
            true_exit,
            true_entry,
            vmfunc,
            procbased3,
            exit2,
        }
    }

    /// The named capabilities, as Linux computes its `vmx flags`: a control
    /// counts when its allowed 1-setting is 1.
    #[must_use]
    pub fn names(&self) -> Capabilities {
        let mut caps = Capabilities::empty();
        let pin = |bit| self.pinbased.is_some_and(|c| c.allows(bit));
        let primary = |bit| self.procbased.is_some_and(|c| c.allows(bit));
        let secondary = |bit| self.procbased2.is_some_and(|c| c.allows(bit));
        let ept = |bit: u32| self.ept_vpid.is_some_and(|v| v & (1 << bit) != 0);
        let tertiary = |bit: u32| self.procbased3.is_some_and(|v| v & (1 << bit) != 0);
        let table = [
            (Capabilities::VNMI, pin(5)),
            (Capabilities::PREEMPTION_TIMER, pin(6)),
            (Capabilities::POSTED_INTR, pin(7)),
            (Capabilities::INVVPID, ept(32)),
            (Capabilities::EPT_X_ONLY, ept(0)),
            (Capabilities::EPT_AD, ept(21)),
            (Capabilities::EPT_1GB, ept(17)),
            (Capabilities::EPT_5LEVEL, ept(7)),
            (Capabilities::FLEXPRIORITY, primary(21) && secondary(0)),
            (
                Capabilities::APICV,
                primary(21) && secondary(8) && secondary(9) && pin(7),
            ),
            (
                Capabilities::EPTP_SWITCHING,
                self.vmfunc.is_some_and(|v| v & 1 != 0),
            ),
            (Capabilities::TSC_OFFSET, primary(3)),
            (Capabilities::VTPR, primary(21)),
            (Capabilities::MTF, primary(27)),
            (Capabilities::VAPIC, secondary(0)),
            (Capabilities::EPT, secondary(1)),
            (Capabilities::VPID, secondary(5)),
            (Capabilities::UNRESTRICTED_GUEST, secondary(7)),
            (Capabilities::VAPIC_REG, secondary(8)),
            (Capabilities::VID, secondary(9)),
            (Capabilities::PLE, secondary(10)),
            (Capabilities::SHADOW_VMCS, secondary(14)),
            (Capabilities::PML, secondary(17)),
            (Capabilities::EPT_VIOLATION_VE, secondary(18)),
            (Capabilities::EPT_MODE_BASED_EXEC, secondary(22)),
            (Capabilities::TSC_SCALING, secondary(25)),
            (Capabilities::USR_WAIT_PAUSE, secondary(26)),
            (Capabilities::NOTIFY_VM_EXITING, secondary(31)),
            (Capabilities::IPI_VIRT, tertiary(4)),
        ];
        for (flag, present) in table {
            caps.set(flag, present);
        }
        caps
    }
}

bitflags! {
    /// Named VMX capabilities, in Linux's `vmx flags` vocabulary (see
    /// [`Capabilities::linux_names`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Capabilities: u32 {
        /// Pin-based bit 5: virtual NMIs.
        const VNMI = 1 << 0;
        /// Pin-based bit 6: VMX-preemption timer.
        const PREEMPTION_TIMER = 1 << 1;
        /// Pin-based bit 7: posted interrupts.
        const POSTED_INTR = 1 << 2;
        /// EPT/VPID capability bit 32: INVVPID.
        const INVVPID = 1 << 3;
        /// EPT/VPID capability bit 0: execute-only EPT entries.
        const EPT_X_ONLY = 1 << 4;
        /// EPT/VPID capability bit 21: EPT accessed and dirty flags.
        const EPT_AD = 1 << 5;
        /// EPT/VPID capability bit 17: 1-GByte EPT pages.
        const EPT_1GB = 1 << 6;
        /// EPT/VPID capability bit 7: 5-level EPT.
        const EPT_5LEVEL = 1 << 7;
        /// TPR shadow and virtualized APIC accesses.
        const FLEXPRIORITY = 1 << 8;
        /// TPR shadow, APIC-register virtualization, virtual-interrupt
        /// delivery and posted interrupts.
        const APICV = 1 << 9;
        /// VM function 0: EPTP switching.
        const EPTP_SWITCHING = 1 << 10;
        /// Primary bit 3: TSC offsetting.
        const TSC_OFFSET = 1 << 11;
        /// Primary bit 21: TPR shadow.
        const VTPR = 1 << 12;
        /// Primary bit 27: monitor trap flag.
        const MTF = 1 << 13;
        /// Secondary bit 0: virtualize APIC accesses.
        const VAPIC = 1 << 14;
        /// Secondary bit 1: EPT.
        const EPT = 1 << 15;
        /// Secondary bit 5: VPID.
        const VPID = 1 << 16;
        /// Secondary bit 7: unrestricted guest.
        const UNRESTRICTED_GUEST = 1 << 17;
        /// Secondary bit 8: APIC-register virtualization.
        const VAPIC_REG = 1 << 18;
        /// Secondary bit 9: virtual-interrupt delivery.
        const VID = 1 << 19;
        /// Secondary bit 10: PAUSE-loop exiting.
        const PLE = 1 << 20;
        /// Secondary bit 14: VMCS shadowing.
        const SHADOW_VMCS = 1 << 21;
        /// Secondary bit 17: page-modification logging.
        const PML = 1 << 22;
        /// Secondary bit 22: mode-based execute control for EPT.
        const EPT_MODE_BASED_EXEC = 1 << 23;
        /// Secondary bit 25: TSC scaling.
        const TSC_SCALING = 1 << 24;
        /// Secondary bit 26: enable user wait and pause.
        const USR_WAIT_PAUSE = 1 << 25;
        /// Secondary bit 31: NOTIFY VM exiting.
        const NOTIFY_VM_EXITING = 1 << 26;
        /// Secondary bit 18: EPT-violation #VE.
        const EPT_VIOLATION_VE = 1 << 27;
        /// Tertiary bit 4: IPI virtualization.
        const IPI_VIRT = 1 << 28;
    }
}

const LINUX_NAMES: [(Capabilities, &str); 29] = [
    (Capabilities::VNMI, "vnmi"),
    (Capabilities::PREEMPTION_TIMER, "preemption_timer"),
    (Capabilities::POSTED_INTR, "posted_intr"),
    (Capabilities::INVVPID, "invvpid"),
    (Capabilities::EPT_X_ONLY, "ept_x_only"),
    (Capabilities::EPT_AD, "ept_ad"),
    (Capabilities::EPT_1GB, "ept_1gb"),
    (Capabilities::EPT_5LEVEL, "ept_5level"),
    (Capabilities::FLEXPRIORITY, "flexpriority"),
    (Capabilities::APICV, "apicv"),
    (Capabilities::EPTP_SWITCHING, "eptp_switching"),
    (Capabilities::TSC_OFFSET, "tsc_offset"),
    (Capabilities::VTPR, "vtpr"),
    (Capabilities::MTF, "mtf"),
    (Capabilities::VAPIC, "vapic"),
    (Capabilities::EPT, "ept"),
    (Capabilities::VPID, "vpid"),
    (Capabilities::UNRESTRICTED_GUEST, "unrestricted_guest"),
    (Capabilities::VAPIC_REG, "vapic_reg"),
    (Capabilities::VID, "vid"),
    (Capabilities::PLE, "ple"),
    (Capabilities::SHADOW_VMCS, "shadow_vmcs"),
    (Capabilities::PML, "pml"),
    (Capabilities::EPT_VIOLATION_VE, "ept_violation_ve"),
    (Capabilities::EPT_MODE_BASED_EXEC, "ept_mode_based_exec"),
    (Capabilities::TSC_SCALING, "tsc_scaling"),
    (Capabilities::USR_WAIT_PAUSE, "usr_wait_pause"),
    (Capabilities::NOTIFY_VM_EXITING, "notify_vm_exiting"),
    (Capabilities::IPI_VIRT, "ipi_virt"),
];

impl Capabilities {
    /// The Linux names of the capabilities present, in the order Linux's
    /// `/proc/cpuinfo` prints them.
    pub fn linux_names(self) -> impl Iterator<Item = &'static str> {
        LINUX_NAMES
            .iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|&(_, name)| name)
    }

    /// The capability with a Linux name.
    #[must_use]
    pub fn from_linux_name(name: &str) -> Option<Self> {
        LINUX_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|&(flag, _)| flag)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The MSRs of Bochs' corei7_skylake_x model, as the issue that
    /// specified this crate recorded them from a Bochs 2.7 run. MSRs it did
    /// not record answer `None` (not read).
    pub(crate) fn skylake_x(msr: u32) -> Option<u64> {
        Some(match msr {
            0x3a => 0x5,
            0x480 => 0x00d8_1000_0000_002b,
            0x481 => 0x0000_007f_0000_0016,
            0x482 => 0xf7f9_fffe_0401_e172,
            0x486 => 0x8000_0021,
            0x487 => 0xffff_ffff,
            0x488 => 0x2000,
            0x489 => 0x0037_27ff,
            0x48b => 0x0217_7fff_0000_0000,
            0x48c => 0x0000_0f01_0633_4141,
            0x491 => 0x1,
            _ => return None,
        })
    }

    #[test]
    fn names_match_linux_for_bochs_skylake_x() {
        let caps = VmxCapabilities::read(VmxBasic::from_raw(0x00d8_1000_0000_002b), skylake_x);
        let names: std::vec::Vec<_> = caps.names().linux_names().collect();
        assert_eq!(
            names,
            [
                "vnmi",
                "preemption_timer",
                "invvpid",
                "ept_x_only",
                "ept_ad",
                "ept_1gb",
                "flexpriority",
                "eptp_switching",
                "tsc_offset",
                "vtpr",
                "vapic",
                "ept",
                "vpid",
                "unrestricted_guest",
                "vapic_reg",
                "vid",
                "ple",
                "shadow_vmcs",
                "pml",
                // Secondary bit 18 is allowed by the model (0x48b bit 50).
                "ept_violation_ve",
                "tsc_scaling",
            ]
        );
    }

    #[test]
    fn msrs_that_do_not_exist_are_never_read() {
        // No secondary controls, no true controls: 0x48B..=0x491 must not be read.
        let basic = VmxBasic::from_raw(0x0058_1000_0000_0001);
        let mut read = std::vec::Vec::new();
        let caps = VmxCapabilities::read(basic, |msr| {
            read.push(msr);
            Some(if msr == 0x482 {
                0x7fff_ffff_0000_0000
            } else {
                0
            })
        });
        assert_eq!(
            read,
            // 0x492 exists: the primary controls allow "activate tertiary
            // controls" (bit 49 of the MSR).
            [
                0x481, 0x482, 0x483, 0x484, 0x485, 0x486, 0x487, 0x488, 0x489, 0x48a, 0x492
            ]
        );
        assert_eq!(caps.procbased2, None);
        assert_eq!(caps.ept_vpid, None);

        // Secondary controls without EPT, VPID or VM functions: still no 0x48C or 0x491.
        let mut read = std::vec::Vec::new();
        VmxCapabilities::read(basic, |msr| {
            read.push(msr);
            Some(match msr {
                0x482 => 1 << 63,
                0x48b => !((1u64 << 33) | (1 << 37) | (1 << 45)) & !0xffff_ffff,
                _ => 0,
            })
        });
        assert!(read.contains(&0x48b));
        assert!(!read.contains(&0x48c) && !read.contains(&0x491));
    }

    #[test]
    fn tertiary_and_secondary_exit_controls_are_read_only_where_they_exist() {
        let basic = VmxBasic::from_raw(0x0058_1000_0000_0001);
        let read_with = |procbased: u64, exit: u64| {
            let mut read = std::vec::Vec::new();
            let caps = VmxCapabilities::read(basic, |msr| {
                read.push(msr);
                Some(match msr {
                    0x482 => procbased,
                    0x483 => exit,
                    0x492 => 1 << 4,
                    0x493 => 0x1,
                    _ => 0,
                })
            });
            (read, caps)
        };
        // Neither "activate tertiary controls" (primary bit 17) nor the
        // exit controls' "activate secondary controls" (bit 31) allowed.
        let (read, caps) = read_with(!(1u64 << 49) & !0xffff_ffff, !(1u64 << 63) & !0xffff_ffff);
        assert!(
            !read.contains(&0x492) && !read.contains(&0x493),
            "{read:x?}"
        );
        assert!(!caps.names().contains(Capabilities::IPI_VIRT));
        let (read, caps) = read_with(1 << 49, 1 << 63);
        assert!(read.contains(&0x492) && read.contains(&0x493));
        assert_eq!((caps.procbased3, caps.exit2), (Some(1 << 4), Some(1)));
        assert!(caps.names().contains(Capabilities::IPI_VIRT));
        assert_eq!(
            Capabilities::IPI_VIRT
                .linux_names()
                .collect::<std::vec::Vec<_>>(),
            ["ipi_virt"]
        );
    }

    #[test]
    fn ept_violation_ve_is_secondary_bit_18() {
        let basic = VmxBasic::from_raw(0x0058_1000_0000_0001);
        let caps = VmxCapabilities::read(basic, |msr| {
            Some(match msr {
                0x482 => 1 << 63,
                0x48b => 1 << (32 + 18),
                _ => 0,
            })
        });
        assert_eq!(
            caps.names().linux_names().collect::<std::vec::Vec<_>>(),
            ["ept_violation_ve"]
        );
    }

    #[test]
    fn control_msr_adjusts_to_allowed_settings() {
        let pin = ControlMsr::from_raw(0x0000_007f_0000_0016);
        assert_eq!(pin.must_be_one(), 0x16);
        assert_eq!(pin.adjust(0), 0x16);
        assert_eq!(pin.adjust(1 << 7), 0x16, "posted interrupts not allowed");
        assert!(pin.allows(6) && !pin.allows(7) && !pin.allows(40));
    }

    #[test]
    fn names_round_trip() {
        for name in Capabilities::all().linux_names() {
            assert_eq!(
                Capabilities::from_linux_name(name)
                    .unwrap()
                    .linux_names()
                    .next(),
                Some(name)
            );
        }
        assert_eq!(Capabilities::all().linux_names().count(), 29);
    }
}
