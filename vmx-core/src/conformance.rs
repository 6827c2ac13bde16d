//! Whether the VMX capability MSRs obey the SDM's own rules for them
//! (Appendix A), as kvm-unit-tests' `test_vmx_caps` holds KVM's nested VMX
//! to them. A processor or hypervisor that breaks one is buggy; VMXON does
//! not depend on these MSRs, so a break is a note for the report, never a
//! verdict by itself (the ones VMXON does depend on, IA32_VMX_BASIC's
//! region and the fixed bits, are decided in [`plan`](crate::plan)).

use crate::capabilities::{ControlMsr, VmxCapabilities};
use crate::fixed_bits::{ControlRegister, FixedBits};

/// The "default1" class of each control MSR (SDM Appendix A, "Algorithms
/// for Determining VMX Capabilities"): the controls that the non-TRUE MSR
/// reports as always 1 and that the TRUE MSR may allow to be 0.
const PINBASED_DEFAULT1: u32 = 0x16;
const PROCBASED_DEFAULT1: u32 = 0x0401_e172;
const EXIT_DEFAULT1: u32 = 0x0003_6dff;
const ENTRY_DEFAULT1: u32 = 0x11ff;

/// IA32_VMX_BASIC: bits 47:45 and 63:57 are reserved (0).
const BASIC_RESERVED: u64 = (0x7 << 45) | (0x7f << 57);
/// IA32_VMX_MISC: bits 13:9 and 31 are reserved (0).
const MISC_RESERVED: u64 = (0x1f << 9) | (1 << 31);
/// IA32_VMX_VMCS_ENUM: bits 9:1 hold the highest index; bit 0 and 63:10
/// are reserved (0).
const VMCS_ENUM_RESERVED: u64 = !0x3fe;
/// IA32_VMX_EPT_VPID_CAP: the bits the SDM defines ("VPID and EPT
/// Capabilities"): 0 execute-only, 6 and 7 page-walk lengths 4 and 5,
/// 8 UC, 14 WB, 16 2-MByte and 17 1-GByte pages, 20 INVEPT, 21 accessed
/// and dirty flags, 22 advanced VM-exit information, 23 supervisor
/// shadow-stack control, 25 and 26 INVEPT types, 32 INVVPID, 40 to 43
/// INVVPID types, 53:48 the maximum HLAT prefix size (editions since the
/// HLAT tertiary control; kvm-unit-tests' mask predates it). Every other
/// bit is reserved (0).
const EPT_VPID_DEFINED: u64 = (1 << 0)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 14)
    | (1 << 16)
    | (1 << 17)
    | (1 << 20)
    | (1 << 21)
    | (1 << 22)
    | (1 << 23)
    | (1 << 25)
    | (1 << 26)
    | (1 << 32)
    | (0xf << 40)
    | (0x3f << 48);

/// One rule of Appendix A that the capability MSRs break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nonconformance {
    /// Reserved bits of a capability MSR are set.
    ReservedBits {
        /// The MSR's name.
        msr: &'static str,
        /// Its value.
        value: u64,
        /// The reserved bits that are set.
        bits: u64,
    },
    /// A control MSR requires a control to be 1 that it does not allow to
    /// be 1 (allowed 0-settings outside the allowed 1-settings).
    RequiredNotAllowed {
        /// The MSR's name.
        msr: &'static str,
        /// Its value.
        value: u64,
    },
    /// A non-TRUE control MSR does not report its default1 controls as
    /// required.
    Default1NotRequired {
        /// The MSR's name.
        msr: &'static str,
        /// Its value.
        value: u64,
        /// The default1 bits it does not require.
        bits: u32,
    },
    /// A TRUE control MSR disagrees with its non-TRUE twin: the allowed
    /// 1-settings must be equal, and the non-TRUE allowed 0-settings must be
    /// the TRUE ones plus the default1 class.
    TrueControlsInconsistent {
        /// The TRUE MSR's name.
        msr: &'static str,
        /// The non-TRUE MSR's value.
        plain: u64,
        /// The TRUE MSR's value.
        true_value: u64,
    },
    /// A bit is 1 in FIXED0 (must be 1) and 0 in FIXED1 (must be 0).
    FixedBitsContradict {
        /// The register.
        register: ControlRegister,
        /// FIXED0.
        fixed0: u64,
        /// FIXED1.
        fixed1: u64,
    },
    /// IA32_VMX_MISC reports more than 256 CR3-target values.
    TooManyCr3Targets {
        /// IA32_VMX_MISC.
        misc: u64,
    },
    /// Unrestricted guest may be enabled but IA32_VMX_MISC bit 5 (VM exits
    /// store IA32_EFER.LMA) is clear, which the SDM ties to it.
    UnrestrictedGuestWithoutLmaStore {
        /// IA32_VMX_MISC.
        misc: u64,
    },
    /// IA32_VMX_VMCS_ENUM reports a highest field index of 0.
    NoVmcsFieldIndex {
        /// IA32_VMX_VMCS_ENUM.
        value: u64,
    },
}

impl core::fmt::Display for Nonconformance {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::ReservedBits { msr, value, bits } => {
                write!(f, "{msr} = {value:#x} sets reserved bits {bits:#x}")
            }
            Self::RequiredNotAllowed { msr, value } => write!(
                f,
                "{msr} = {value:#x} requires controls it does not allow (allowed 0-settings \
                 {:#x} not within allowed 1-settings {:#x})",
                value as u32,
                value >> 32
            ),
            Self::Default1NotRequired { msr, value, bits } => write!(
                f,
                "{msr} = {value:#x} does not require the default1 controls {bits:#x}"
            ),
            Self::TrueControlsInconsistent {
                msr,
                plain,
                true_value,
            } => write!(
                f,
                "{msr} = {true_value:#x} is inconsistent with its non-TRUE MSR = {plain:#x} \
                 (equal allowed 1-settings; non-TRUE allowed 0-settings = TRUE ones plus \
                 default1)"
            ),
            Self::FixedBitsContradict {
                register,
                fixed0,
                fixed1,
            } => write!(
                f,
                "IA32_VMX_{register}_FIXED0 = {fixed0:#x} requires bits {:#x} that \
                 IA32_VMX_{register}_FIXED1 = {fixed1:#x} forbids",
                fixed0 & !fixed1
            ),
            Self::TooManyCr3Targets { misc } => write!(
                f,
                "IA32_VMX_MISC = {misc:#x} reports {} CR3-target values, more than 256",
                (misc >> 16) & 0x1ff
            ),
            Self::UnrestrictedGuestWithoutLmaStore { misc } => write!(
                f,
                "unrestricted guest may be enabled but IA32_VMX_MISC = {misc:#x} has bit 5 \
                 (store IA32_EFER.LMA on VM exit) clear"
            ),
            Self::NoVmcsFieldIndex { value } => write!(
                f,
                "IA32_VMX_VMCS_ENUM = {value:#x} reports a highest VMCS field index of 0"
            ),
        }
    }
}

impl VmxCapabilities {
    /// Every rule of Appendix A that these MSRs break, checked on the MSRs
    /// that were read (one not read is not judged).
    pub fn nonconformances(&self) -> impl Iterator<Item = Nonconformance> {
        // At most 26 breaks can occur at once (the test that breaks every
        // rule counts them); room for all, so that none is dropped.
        let mut found: [Option<Nonconformance>; 32] = [None; 32];
        let mut n = 0;
        let mut push = |item: Nonconformance| {
            if n < found.len() {
                found[n] = Some(item);
                n += 1;
            }
        };
        let basic = self.basic.raw();
        if basic & BASIC_RESERVED != 0 || basic & (1 << 31) != 0 {
            push(Nonconformance::ReservedBits {
                msr: "IA32_VMX_BASIC",
                value: basic,
                bits: basic & (BASIC_RESERVED | (1 << 31)),
            });
        }
        let controls = [
            (
                "IA32_VMX_PINBASED_CTLS",
                "IA32_VMX_TRUE_PINBASED_CTLS",
                self.pinbased,
                self.true_pinbased,
                PINBASED_DEFAULT1,
            ),
            (
                "IA32_VMX_PROCBASED_CTLS",
                "IA32_VMX_TRUE_PROCBASED_CTLS",
                self.procbased,
                self.true_procbased,
                PROCBASED_DEFAULT1,
            ),
            (
                "IA32_VMX_EXIT_CTLS",
                "IA32_VMX_TRUE_EXIT_CTLS",
                self.exit,
                self.true_exit,
                EXIT_DEFAULT1,
            ),
            (
                "IA32_VMX_ENTRY_CTLS",
                "IA32_VMX_TRUE_ENTRY_CTLS",
                self.entry,
                self.true_entry,
                ENTRY_DEFAULT1,
            ),
        ];
        for (name, true_name, plain, true_msr, default1) in controls {
            let Some(plain) = plain else { continue };
            check_control(name, plain, &mut push);
            if plain.must_be_one() & default1 != default1 {
                push(Nonconformance::Default1NotRequired {
                    msr: name,
                    value: plain.raw(),
                    bits: default1 & !plain.must_be_one(),
                });
            }
            if let Some(true_msr) = true_msr.filter(|_| self.basic.true_controls()) {
                check_control(true_name, true_msr, &mut push);
                if true_msr.may_be_one() != plain.may_be_one()
                    || plain.must_be_one() != true_msr.must_be_one() | default1
                {
                    push(Nonconformance::TrueControlsInconsistent {
                        msr: true_name,
                        plain: plain.raw(),
                        true_value: true_msr.raw(),
                    });
                }
            }
        }
        if let Some(secondary) = self.procbased2 {
            check_control("IA32_VMX_PROCBASED_CTLS2", secondary, &mut push);
        }
        for (register, fixed) in [
            (ControlRegister::Cr0, self.cr0_fixed),
            (ControlRegister::Cr4, self.cr4_fixed),
        ] {
            if let Some(fixed) = fixed.filter(|f| !f.is_satisfiable()) {
                push(contradiction(register, fixed));
            }
        }
        if let Some(misc) = self.misc {
            if misc & MISC_RESERVED != 0 {
                push(Nonconformance::ReservedBits {
                    msr: "IA32_VMX_MISC",
                    value: misc,
                    bits: misc & MISC_RESERVED,
                });
            }
            if (misc >> 16) & 0x1ff > 256 {
                push(Nonconformance::TooManyCr3Targets { misc });
            }
            let unrestricted = self.procbased2.is_some_and(|p| p.allows(7));
            if unrestricted && misc & (1 << 5) == 0 {
                push(Nonconformance::UnrestrictedGuestWithoutLmaStore { misc });
            }
        }
        if let Some(value) = self.vmcs_enum {
            if value & VMCS_ENUM_RESERVED != 0 {
                push(Nonconformance::ReservedBits {
                    msr: "IA32_VMX_VMCS_ENUM",
                    value,
                    bits: value & VMCS_ENUM_RESERVED,
                });
            }
            if value & 0x3fe == 0 {
                push(Nonconformance::NoVmcsFieldIndex { value });
            }
        }
        if let Some(value) = self.ept_vpid.filter(|v| v & !EPT_VPID_DEFINED != 0) {
            push(Nonconformance::ReservedBits {
                msr: "IA32_VMX_EPT_VPID_CAP",
                value,
                bits: value & !EPT_VPID_DEFINED,
            });
        }
        found.into_iter().take(n).flatten()
    }
}

fn check_control(name: &'static str, msr: ControlMsr, push: &mut impl FnMut(Nonconformance)) {
    if msr.must_be_one() & !msr.may_be_one() != 0 {
        push(Nonconformance::RequiredNotAllowed {
            msr: name,
            value: msr.raw(),
        });
    }
}

fn contradiction(register: ControlRegister, fixed: FixedBits) -> Nonconformance {
    Nonconformance::FixedBitsContradict {
        register,
        fixed0: fixed.must_be_one(),
        fixed1: !fixed.must_be_zero(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::tests::skylake_x;
    use crate::vmx_basic::VmxBasic;
    use std::vec::Vec;

    fn caps(answer: impl Fn(u32) -> Option<u64>) -> VmxCapabilities {
        VmxCapabilities::read(VmxBasic::from_raw(answer(0x480).unwrap()), answer)
    }

    #[test]
    fn bochs_skylake_x_conforms() {
        let found: Vec<_> = caps(skylake_x).nonconformances().collect();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn each_rule_is_reported_with_the_values() {
        let with = |msr: u32, value: u64| {
            caps(move |m| if m == msr { Some(value) } else { skylake_x(m) })
                .nonconformances()
                .collect::<Vec<_>>()
        };
        assert!(matches!(
            with(0x480, 0x00d8_1000_0000_002b | (1 << 46))[..],
            [Nonconformance::ReservedBits {
                msr: "IA32_VMX_BASIC",
                bits: 0x4000_0000_0000,
                ..
            }]
        ));
        // Pin-based: requires bit 8, which it does not allow.
        assert!(matches!(
            with(0x481, 0x0000_007f_0000_0116)[..],
            [Nonconformance::RequiredNotAllowed {
                msr: "IA32_VMX_PINBASED_CTLS",
                ..
            }]
        ));
        // Pin-based without its default1 bit 4 required.
        assert!(matches!(
            with(0x481, 0x0000_007f_0000_0006)[..],
            [Nonconformance::Default1NotRequired { bits: 0x10, .. }]
        ));
        assert!(matches!(
            with(0x489, 0x0037_07ff)[..],
            [Nonconformance::FixedBitsContradict {
                register: ControlRegister::Cr4,
                ..
            }]
        ));
        assert!(matches!(
            with(0x48c, 0x0000_0f01_0633_4141 | (1 << 39))[..],
            [Nonconformance::ReservedBits {
                msr: "IA32_VMX_EPT_VPID_CAP",
                bits: 0x80_0000_0000,
                ..
            }]
        ));
        let text = std::format!("{}", with(0x48c, 0x0000_0f01_0633_4141 | (1 << 39))[0]);
        assert!(
            text.contains("IA32_VMX_EPT_VPID_CAP") && text.contains("0x8000000000"),
            "{text}"
        );
    }

    #[test]
    fn every_break_is_reported_even_when_all_rules_break_at_once() {
        // Each MSR breaks every rule it can: 26 breaks in all.
        let answer = |m: u32| {
            Some(match m {
                0x480 => 0x00d8_1000_0000_002b | (1 << 46),
                // Requires bit 8 (not allowed) and none of its default1.
                0x481 | 0x483 | 0x484 => 0x100,
                // The same, allowing only "activate secondary controls".
                0x482 => 0x8000_0000_0000_0100,
                0x485 => 0x81ff_0000,
                0x486 | 0x488 => 1,
                0x487 | 0x489 => 0,
                0x48a => 1,
                // Requires bit 0, allows only EPT and unrestricted guest.
                0x48b => 0x0000_0082_0000_0001,
                0x48c => 1 << 39,
                // TRUE controls requiring bit 9, not allowed either.
                0x48d..=0x490 => 0x200,
                _ => return None,
            })
        };
        let found: Vec<_> = caps(answer).nonconformances().collect();
        assert_eq!(found.len(), 26, "{found:?}");
    }

    #[test]
    fn the_maximum_hlat_prefix_size_is_not_reserved() {
        // Bits 53:48 of IA32_VMX_EPT_VPID_CAP enumerate the maximum HLAT
        // prefix size (1 on a processor with the "enable HLAT" control).
        let with = |value: u64| {
            caps(move |m| {
                if m == 0x48c {
                    Some(value)
                } else {
                    skylake_x(m)
                }
            })
            .nonconformances()
            .collect::<Vec<_>>()
        };
        let found = with(0x0000_0f01_0633_4141 | (1 << 48));
        assert!(found.is_empty(), "{found:?}");
        // Bits 47:44 and 63:54 stay reserved.
        for bit in [44, 47, 54, 63] {
            assert_eq!(
                with(0x0000_0f01_0633_4141 | (1 << bit)).len(),
                1,
                "bit {bit}"
            );
        }
    }

    #[test]
    fn true_controls_must_agree_with_the_others() {
        let answer = |m: u32| match m {
            0x483 => Some(0x01ff_ffff_0003_6dff),
            // TRUE exit controls allowing fewer 1-settings than the plain MSR.
            0x48f => Some(0x00ff_ffff_0003_6dfb),
            _ => skylake_x(m),
        };
        let found: Vec<_> = caps(answer).nonconformances().collect();
        assert!(
            matches!(
                found[..],
                [Nonconformance::TrueControlsInconsistent {
                    msr: "IA32_VMX_TRUE_EXIT_CTLS",
                    ..
                }]
            ),
            "{found:?}"
        );
        let consistent = |m: u32| match m {
            0x483 => Some(0x01ff_ffff_0003_6dff),
            0x48f => Some(0x01ff_ffff_0003_6dfb),
            _ => skylake_x(m),
        };
        assert_eq!(caps(consistent).nonconformances().count(), 0);
    }

    #[test]
    fn misc_and_vmcs_enum_rules() {
        let misc = |value: u64| {
            caps(move |m| match m {
                0x485 => Some(value),
                0x48a => Some(0x2e),
                _ => skylake_x(m),
            })
            .nonconformances()
            .collect::<Vec<_>>()
        };
        // Bochs-like MISC with bit 5 set and 4 CR3 targets: fine.
        assert!(misc(0x0004_01e7 | (1 << 5)).is_empty());
        assert!(matches!(
            misc(0x01ff_0020)[..],
            [Nonconformance::TooManyCr3Targets { .. }]
        ));
        // Skylake-X allows unrestricted guest (secondary bit 7): bit 5 needed.
        assert!(matches!(
            misc(0x0004_01c7)[..],
            [Nonconformance::UnrestrictedGuestWithoutLmaStore { .. }]
        ));
        assert!(matches!(
            misc(0x0004_01e7 | (1 << 31))[..],
            [Nonconformance::ReservedBits {
                msr: "IA32_VMX_MISC",
                ..
            }]
        ));
        let vmcs_enum = caps(|m| if m == 0x48a { Some(0x1) } else { skylake_x(m) })
            .nonconformances()
            .collect::<Vec<_>>();
        assert!(matches!(
            vmcs_enum[..],
            [
                Nonconformance::ReservedBits { .. },
                Nonconformance::NoVmcsFieldIndex { .. }
            ]
        ));
    }
}
