//! The one decision behind both the readiness diagnosis and entering VMX
//! operation: from the values that VMXON depends on to "VMXON may run, with
//! these register values", a refusal with its reason, or "not known".
//!
//! [`diagnose`](crate::diagnose) and [`Processor::enter`](crate::Processor::enter)
//! both gather [`Readings`] and call [`decide`], so the checker can never
//! say `ready` where entering refuses, nor the other way round (a property
//! test over random processors holds them to it).
//!
//! The rules, in the order they are applied (the verdicts' order):
//! 1. CPUID (SDM, "Discovering Support for VMX"): AMD-V vendors (AMD,
//!    Hygon) are refused, where leaf 1 ECX bit 5 is not VMX; every other
//!    vendor (Intel, Centaur, Zhaoxin, …) is decided by CPUID.1:ECX.VMX.
//! 2. IA32_FEATURE_CONTROL ("Enabling and Entering VMX Operation"): locked
//!    without VMX outside SMX operation is refused; unlocked is fine (it is
//!    locked with VMX enabled on the way in).
//! 3. CR4.VMXE already set: another hypervisor owns VMX.
//! 4. The processor's own report: a physical-address width with room for a
//!    4 KiB-aligned region above address 0; IA32_FEATURE_CONTROL, IA32_VMX_BASIC and
//!    the fixed-bit MSRs must be readable; IA32_VMX_BASIC must describe a
//!    region vmx-core can provide (size in 1..=4096, write-back, bit 31
//!    clear); the fixed bits must be satisfiable; and no CR0 or CR4 bit
//!    that the running system set may be one that FIXED1 forbids. vmx-core
//!    sets the bits FIXED0 requires (NE, VMXE) but never clears a set bit:
//!    clearing CR4.PAE or LA57 in IA-32e mode is a #GP, and clearing PKE,
//!    OSXSAVE, SMEP or SMAP breaks or weakens the running OS.
//! 5. Anything not known (not readable here) leaves the answer open.

use crate::cpu::Cpu;
use crate::cpuid::CpuIdentity;
use crate::diagnosis::{MsrRead, Observe};
use crate::error::{Error, Instruction};
use crate::feature_control::{FeatureControl, FeatureControlState, IA32_FEATURE_CONTROL};
use crate::fixed_bits::{
    CR0_PE, CR0_PG, CR4_VMXE, ControlRegister, FixedBits, IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1,
    IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1,
};
use crate::vmx_basic::{IA32_VMX_BASIC, VmxBasic};

/// The values VMXON depends on, as one processor answered them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Readings {
    /// CPUID's answers; `None` without leaf 0.
    pub identity: Option<CpuIdentity>,
    /// IA32_FEATURE_CONTROL; [`MsrRead::Unavailable`] also when not asked
    /// for (the processor does not report VMX).
    pub feature_control: MsrRead,
    /// IA32_VMX_BASIC.
    pub basic: MsrRead,
    /// IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1.
    pub cr0_fixed: [MsrRead; 2],
    /// IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1.
    pub cr4_fixed: [MsrRead; 2],
    /// CR0, where known (ring 0 only).
    pub cr0: Option<u64>,
    /// CR4, where known (ring 0 only).
    pub cr4: Option<u64>,
}

impl Readings {
    /// Reads what [`decide`] needs from `source`: CPUID (see
    /// [`CpuIdentity::read`]); then, only when CPUID leaves VMX possible,
    /// IA32_FEATURE_CONTROL, IA32_VMX_BASIC and the four fixed-bit MSRs
    /// (each exists on every processor that reports VMX); then CR0 and CR4
    /// (where the source knows them). Each is read once.
    pub fn gather<O: Observe + ?Sized>(source: &mut O) -> Self {
        let identity = CpuIdentity::read(|leaf, subleaf| source.cpuid(leaf, subleaf));
        let not_read = MsrRead::Unavailable;
        let mut readings = Self {
            identity,
            feature_control: not_read,
            basic: not_read,
            cr0_fixed: [not_read; 2],
            cr4_fixed: [not_read; 2],
            cr0: None,
            cr4: None,
        };
        if identity.is_some_and(|i| i.reports_vmx()) {
            readings.feature_control = source.read_msr(IA32_FEATURE_CONTROL);
            readings.basic = source.read_msr(IA32_VMX_BASIC);
            readings.cr0_fixed = [
                source.read_msr(IA32_VMX_CR0_FIXED0),
                source.read_msr(IA32_VMX_CR0_FIXED1),
            ];
            readings.cr4_fixed = [
                source.read_msr(IA32_VMX_CR4_FIXED0),
                source.read_msr(IA32_VMX_CR4_FIXED1),
            ];
        }
        readings.cr0 = source.cr0();
        readings.cr4 = source.cr4();
        readings
    }

    /// The value of an MSR these readings hold, for a later reader that
    /// must not ask the processor again.
    #[must_use]
    pub fn msr(&self, msr: u32) -> Option<MsrRead> {
        Some(match msr {
            IA32_FEATURE_CONTROL => self.feature_control,
            IA32_VMX_BASIC => self.basic,
            IA32_VMX_CR0_FIXED0 => self.cr0_fixed[0],
            IA32_VMX_CR0_FIXED1 => self.cr0_fixed[1],
            IA32_VMX_CR4_FIXED0 => self.cr4_fixed[0],
            IA32_VMX_CR4_FIXED1 => self.cr4_fixed[1],
            _ => return None,
        })
    }
}

/// What entering will do: the values read, and the CR0 and CR4 values to
/// write before VMXON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Plan {
    /// The processor's CPUID answers.
    pub identity: CpuIdentity,
    /// IA32_FEATURE_CONTROL as read: enabled, or unlocked (then locked on
    /// the way in).
    pub feature_control: FeatureControl,
    /// IA32_VMX_BASIC.
    pub basic: VmxBasic,
    /// CR0 as read.
    pub cr0: u64,
    /// CR4 as read.
    pub cr4: u64,
    /// CR0 with the bits FIXED0 requires set (NE).
    pub cr0_target: u64,
    /// CR4 with VMXE and the bits FIXED0 requires set.
    pub cr4_target: u64,
}

/// A value the decision needed and did not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Missing {
    /// CPUID leaf 0.
    Leaf0,
    /// CPUID leaf 1.
    Leaf1,
    /// An MSR, not readable here.
    Msr(u32),
    /// A control register, not readable here (only ring 0 reads them).
    ControlRegister(ControlRegister),
}

impl core::fmt::Display for Missing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Leaf0 => f.write_str("CPUID leaf 0"),
            Self::Leaf1 => f.write_str("CPUID leaf 1"),
            Self::Msr(msr) => write!(f, "MSR {msr:#x}"),
            Self::ControlRegister(register) => write!(f, "{register}"),
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Everything allows VMXON: the plan to carry out.
    Enter(Plan),
    /// A definite reason why VMXON cannot run, with the values.
    Refuse(Error),
    /// Every MSR read allows VMXON, but CR0 and CR4 could not be read
    /// (only ring 0 reads them), so the checks on them (CR4.VMXE already
    /// set, a set bit that FIXED1 forbids) are left to the moment of
    /// entering, which reads them. The diagnosis calls this `ready`, as
    /// Linux's own check does from user mode.
    AllowedUnlessControlRegisters,
    /// Not known: a value the decision needs could not be read.
    Unknown(Missing),
}

/// Decides from `readings` whether VMXON may run, and how; see the module
/// documentation for the rules and their order.
#[must_use]
pub fn decide(readings: &Readings) -> Decision {
    use Decision::{Refuse, Unknown};
    let Some(identity) = readings.identity else {
        return Unknown(Missing::Leaf0);
    };
    if identity.vendor.is_amd_v() {
        return Refuse(Error::NotIntel {
            vendor: identity.vendor,
        });
    }
    if identity.features.is_none() {
        return Unknown(Missing::Leaf1);
    }
    if !identity.vmx() {
        return Refuse(Error::VmxNotSupported {
            hypervisor: identity.hypervisor,
        });
    }
    let feature_control = match readings.feature_control {
        MsrRead::Value(raw) => Some(FeatureControl::from_raw(raw)),
        _ => None,
    };
    if let Some(fc) = feature_control {
        match fc.state() {
            FeatureControlState::Enabled | FeatureControlState::Unlocked => {}
            FeatureControlState::DisabledByFirmware => {
                return Refuse(Error::DisabledByFirmware { msr: fc.raw() });
            }
            FeatureControlState::VmxOnlyInsideSmx => {
                return Refuse(Error::VmxOnlyInsideSmx { msr: fc.raw() });
            }
        }
    }
    if let Some(cr4) = readings.cr4.filter(|cr4| cr4 & CR4_VMXE != 0) {
        return Refuse(Error::InUse { cr4 });
    }
    // A VMXON region is a 4 KiB-aligned page below 2^width: with 12 bits
    // or fewer only address 0 would do ("VMXON Region").
    if identity.physical_address_width <= 12 {
        return Refuse(Error::AddressWidthTooSmall {
            width: identity.physical_address_width,
        });
    }
    match unusable(readings) {
        Err(error) => Refuse(error),
        Ok(Err(missing)) => Unknown(missing),
        Ok(Ok(None)) => match feature_control {
            Some(_) => Decision::AllowedUnlessControlRegisters,
            None => Unknown(Missing::Msr(IA32_FEATURE_CONTROL)),
        },
        Ok(Ok(Some((basic, cr0, cr4, cr0_target, cr4_target)))) => match feature_control {
            Some(feature_control) => Decision::Enter(Plan {
                identity,
                feature_control,
                basic,
                cr0,
                cr4,
                cr0_target,
                cr4_target,
            }),
            None => Unknown(Missing::Msr(IA32_FEATURE_CONTROL)),
        },
    }
}

/// The register values a ready processor would get.
type Targets = (VmxBasic, u64, u64, u64, u64);

/// Rule 4: what the processor itself reports that rules VMXON out. The
/// outer error is a refusal; the inner one a value not known (a refusal
/// found among the known values wins over it).
///
/// `Ok(Ok(None))`: every MSR is known and allows VMXON, CR0 or CR4 is not
/// known.
fn unusable(readings: &Readings) -> Result<Result<Option<Targets>, Missing>, Error> {
    let mut missing = None;
    let mut known = |read: MsrRead, msr: u32| -> Result<Option<u64>, Error> {
        match read {
            MsrRead::Value(value) => Ok(Some(value)),
            MsrRead::Faulted => Err(Error::Faulted {
                instruction: Instruction::Rdmsr(msr),
                fault: crate::cpu::Fault::GeneralProtection,
            }),
            MsrRead::Unavailable => {
                missing.get_or_insert(Missing::Msr(msr));
                Ok(None)
            }
        }
    };
    known(readings.feature_control, IA32_FEATURE_CONTROL)?;
    let basic = known(readings.basic, IA32_VMX_BASIC)?.map(VmxBasic::from_raw);
    if let Some(basic) = basic {
        basic.check_usable()?;
    }
    let cr0_fixed = fixed_pair(
        &mut known,
        ControlRegister::Cr0,
        readings.cr0_fixed,
        [IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1],
    )?;
    let cr4_fixed = fixed_pair(
        &mut known,
        ControlRegister::Cr4,
        readings.cr4_fixed,
        [IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1],
    )?;
    let cr0_target = match (readings.cr0, cr0_fixed) {
        (Some(cr0), Some(fixed)) => Some(cr0_target(cr0, fixed)?),
        _ => None,
    };
    let cr4_target = match (readings.cr4, cr4_fixed) {
        (Some(cr4), Some(fixed)) => Some(target(ControlRegister::Cr4, cr4, CR4_VMXE, fixed)?),
        _ => None,
    };
    if let Some(missing) = missing {
        return Ok(Err(missing));
    }
    let (Some(basic), Some(cr0), Some(cr4), Some(cr0_target), Some(cr4_target)) =
        (basic, readings.cr0, readings.cr4, cr0_target, cr4_target)
    else {
        return Ok(Ok(None));
    };
    Ok(Ok(Some((basic, cr0, cr4, cr0_target, cr4_target))))
}

fn fixed_pair(
    known: &mut impl FnMut(MsrRead, u32) -> Result<Option<u64>, Error>,
    register: ControlRegister,
    reads: [MsrRead; 2],
    msrs: [u32; 2],
) -> Result<Option<FixedBits>, Error> {
    let fixed0 = known(reads[0], msrs[0])?;
    let fixed1 = known(reads[1], msrs[1])?;
    let (Some(fixed0), Some(fixed1)) = (fixed0, fixed1) else {
        return Ok(None);
    };
    let bits = FixedBits::new(fixed0, fixed1);
    if !bits.is_satisfiable() {
        return Err(Error::FixedBitsUnsatisfiable {
            register,
            fixed0,
            fixed1,
        });
    }
    Ok(Some(bits))
}

/// `value` with `extra` and the bits FIXED0 requires set; refused when a
/// bit of the result is one FIXED1 forbids. A bit set in `value` is one the
/// running system set: vmx-core never clears it.
fn target(
    register: ControlRegister,
    value: u64,
    extra: u64,
    fixed: FixedBits,
) -> Result<u64, Error> {
    let target = value | extra | fixed.must_be_one();
    let forbidden = target & fixed.must_be_zero();
    if forbidden != 0 {
        return Err(Error::FixedBitForbidden {
            register,
            bit: forbidden.trailing_zeros() as u8,
            value,
            fixed1: !fixed.must_be_zero(),
        });
    }
    Ok(target)
}

/// CR0's target: as [`target`], and refused when meeting FIXED0 would turn
/// protection or paging on under the running system's feet.
fn cr0_target(cr0: u64, fixed: FixedBits) -> Result<u64, Error> {
    let adjusted = target(ControlRegister::Cr0, cr0, 0, fixed)?;
    if (cr0 ^ adjusted) & (CR0_PE | CR0_PG) != 0 {
        return Err(Error::Cr0ChangeRefused { cr0, adjusted });
    }
    Ok(adjusted)
}

/// [`decide`] over a [`Cpu`]: reads what it needs from the processor the
/// calling code runs on.
pub fn decide_for<C: Cpu + ?Sized>(cpu: &mut C) -> Decision {
    decide(&Readings::gather(&mut crate::diagnosis::CpuObserver(cpu)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuidResult;
    use crate::cpuid::Vendor;

    fn identity(vendor: &[u8; 12], ecx: u32) -> CpuIdentity {
        let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        CpuIdentity::read(|leaf, _| {
            Some(match leaf {
                0 => CpuidResult {
                    eax: 1,
                    ebx: le(&vendor[0..4]),
                    edx: le(&vendor[4..8]),
                    ecx: le(&vendor[8..12]),
                },
                1 => CpuidResult {
                    ecx,
                    ..Default::default()
                },
                _ => return None,
            })
        })
        .unwrap()
    }

    /// Bochs corei7_skylake_x as GRUB leaves it.
    fn skylake() -> Readings {
        Readings {
            identity: Some(identity(b"GenuineIntel", 1 << 5)),
            feature_control: MsrRead::Value(0x5),
            basic: MsrRead::Value(0x00d8_1000_0000_002b),
            cr0_fixed: [MsrRead::Value(0x8000_0021), MsrRead::Value(0xffff_ffff)],
            cr4_fixed: [MsrRead::Value(0x2000), MsrRead::Value(0x0037_27ff)],
            cr0: Some(0xe000_0011),
            cr4: Some(0x20),
        }
    }

    #[test]
    fn a_ready_processor_gets_ne_and_vmxe_and_nothing_else() {
        let Decision::Enter(plan) = decide(&skylake()) else {
            panic!("{:?}", decide(&skylake()));
        };
        assert_eq!(plan.cr0_target, 0xe000_0031);
        assert_eq!(plan.cr4_target, 0x2020);
    }

    #[test]
    fn a_set_cr4_bit_that_fixed1_forbids_is_refused_not_cleared() {
        // A nested hypervisor reports FIXED1 without PKE (bit 22) while its
        // guest runs with PKE set. Before, entering cleared PKE silently.
        let readings = Readings {
            cr4: Some(0x40_0020),
            ..skylake()
        };
        assert_eq!(
            decide(&readings),
            Decision::Refuse(Error::FixedBitForbidden {
                register: ControlRegister::Cr4,
                bit: 22,
                value: 0x40_0020,
                fixed1: 0x0037_27ff,
            })
        );
        // LA57 (bit 12) in IA-32e mode: clearing it would be a #GP.
        let la57 = Readings {
            cr4: Some(0x1020),
            cr4_fixed: [
                MsrRead::Value(0x2000),
                MsrRead::Value(0x0037_27ff & !0x1000),
            ],
            ..skylake()
        };
        assert!(matches!(
            decide(&la57),
            Decision::Refuse(Error::FixedBitForbidden { bit: 12, .. })
        ));
    }

    #[test]
    fn a_set_cr0_bit_that_fixed1_forbids_is_refused() {
        let readings = Readings {
            cr0: Some(0xe000_0031),
            cr0_fixed: [MsrRead::Value(0x8000_0021), MsrRead::Value(0x9fff_ffff)],
            ..skylake()
        };
        assert!(matches!(
            decide(&readings),
            Decision::Refuse(Error::FixedBitForbidden {
                register: ControlRegister::Cr0,
                bit: 29,
                ..
            })
        ));
    }

    #[test]
    fn vmxe_forbidden_by_fixed1_is_refused() {
        let readings = Readings {
            cr4_fixed: [MsrRead::Value(0), MsrRead::Value(0x0037_07ff)],
            ..skylake()
        };
        assert!(matches!(
            decide(&readings),
            Decision::Refuse(Error::FixedBitForbidden { bit: 13, .. })
        ));
    }

    #[test]
    fn a_forbidden_vmxe_is_not_said_to_be_set() {
        // CR4 = 0x20 lacks VMXE: the refusal must not claim the running
        // system set it, nor that vmx-core keeps it for the system's sake.
        let readings = Readings {
            cr4_fixed: [MsrRead::Value(0), MsrRead::Value(0x0037_07ff)],
            ..skylake()
        };
        let Decision::Refuse(error) = decide(&readings) else {
            panic!("{:?}", decide(&readings));
        };
        let text = std::format!("{error}");
        assert!(text.contains("CR4.VMXE (bit 13)"), "{text}");
        assert!(text.contains("CR4 = 0x20"), "{text}");
        assert!(!text.contains("is set in"), "{text}");
        assert!(!text.contains("running system depends on"), "{text}");
        // A bit the running system did set keeps its wording.
        let pke = Readings {
            cr4: Some(0x40_0020),
            ..skylake()
        };
        let Decision::Refuse(error) = decide(&pke) else {
            panic!("{:?}", decide(&pke));
        };
        let text = std::format!("{error}");
        assert!(text.contains("is set in CR4 = 0x400020"), "{text}");
        assert!(text.contains("running system depends on"), "{text}");
    }

    #[test]
    fn only_amd_v_vendors_are_refused_by_vendor() {
        for vendor in [b"AuthenticAMD", b"HygonGenuine"] {
            let readings = Readings {
                identity: Some(identity(vendor, 1 << 5)),
                ..skylake()
            };
            assert!(matches!(
                decide(&readings),
                Decision::Refuse(Error::NotIntel { .. })
            ));
        }
        // Centaur and Zhaoxin implement VMX: decided by the VMX bit.
        for vendor in [b"CentaurHauls", b"  Shanghai  "] {
            let with_vmx = Readings {
                identity: Some(identity(vendor, 1 << 5)),
                ..skylake()
            };
            assert!(
                matches!(decide(&with_vmx), Decision::Enter(_)),
                "{vendor:?}"
            );
            let without = Readings {
                identity: Some(identity(vendor, 0)),
                ..skylake()
            };
            assert!(matches!(
                decide(&without),
                Decision::Refuse(Error::VmxNotSupported { .. })
            ));
            assert!(matches!(
                with_vmx.identity.unwrap().vendor,
                Vendor::Other(_)
            ));
        }
    }

    #[test]
    fn unusable_reports_are_refusals() {
        let faulted = |f: fn(&mut Readings)| {
            let mut readings = skylake();
            f(&mut readings);
            decide(&readings)
        };
        let rdmsr = |msr| {
            Decision::Refuse(Error::Faulted {
                instruction: Instruction::Rdmsr(msr),
                fault: crate::cpu::Fault::GeneralProtection,
            })
        };
        assert_eq!(
            faulted(|r| r.feature_control = MsrRead::Faulted),
            rdmsr(0x3a)
        );
        assert_eq!(faulted(|r| r.basic = MsrRead::Faulted), rdmsr(0x480));
        assert_eq!(faulted(|r| r.cr4_fixed[1] = MsrRead::Faulted), rdmsr(0x489));
        assert!(matches!(
            faulted(|r| r.basic = MsrRead::Value(0x00d8_0000_0000_002b)),
            Decision::Refuse(Error::RegionSizeZero { .. })
        ));
        assert!(matches!(
            faulted(|r| r.basic = MsrRead::Value(0x00d8_1000_8000_002b)),
            Decision::Refuse(Error::RevisionBit31Set { .. })
        ));
        assert!(matches!(
            faulted(|r| r.cr0_fixed = [MsrRead::Value(1), MsrRead::Value(0)]),
            Decision::Refuse(Error::FixedBitsUnsatisfiable { .. })
        ));
    }

    #[test]
    fn a_physical_address_width_without_room_for_a_region_is_refused() {
        let mut narrow = skylake();
        if let Some(identity) = narrow.identity.as_mut() {
            identity.physical_address_width = 12;
        }
        assert_eq!(
            decide(&narrow),
            Decision::Refuse(Error::AddressWidthTooSmall { width: 12 })
        );
        if let Some(identity) = narrow.identity.as_mut() {
            identity.physical_address_width = 13;
        }
        assert!(matches!(decide(&narrow), Decision::Enter(_)));
    }

    #[test]
    fn a_refusal_among_known_values_wins_over_an_unknown_one() {
        let readings = Readings {
            feature_control: MsrRead::Unavailable,
            basic: MsrRead::Faulted,
            ..skylake()
        };
        assert!(matches!(
            decide(&readings),
            Decision::Refuse(Error::Faulted { .. })
        ));
        let unknown = Readings {
            feature_control: MsrRead::Unavailable,
            ..skylake()
        };
        assert_eq!(decide(&unknown), Decision::Unknown(Missing::Msr(0x3a)));
        let no_cr = Readings {
            cr0: None,
            cr4: None,
            ..skylake()
        };
        assert_eq!(decide(&no_cr), Decision::AllowedUnlessControlRegisters);
    }
}
