//! The VMX controls to write: computed from what a hypervisor wants and
//! needs and what the processor allows (SDM Appendix A, "Algorithms for
//! Determining VMX Capabilities", with the allowed settings of "Basic
//! VM-Execution Controls", "Secondary Processor-Based VM-Execution
//! Controls", "VM-Exit Controls" and "VM-Entry Controls").
//!
//! Each control field has a capability MSR whose bits 31:0 are the allowed
//! 0-settings (a bit set there must be 1) and bits 63:32 the allowed
//! 1-settings (a bit clear there must be 0). When IA32_VMX_BASIC bit 55 is
//! 1, the TRUE_* MSRs report the real allowed 0-settings of the pin-based,
//! primary processor-based, VM-exit and VM-entry controls, and the
//! ordinary MSRs report the *default* settings: the "default1" controls
//! read as must-be-1 there. The SDM's third algorithm follows: a control
//! the hypervisor does not care about takes its default setting (1 for a
//! default1 control, 0 otherwise) when the TRUE MSR leaves it flexible, and
//! whatever the processor fixes it to otherwise; a control the hypervisor
//! wants is set when it is allowed; a control it requires must be allowed,
//! or the computation fails and names the control and bit.

use x86::msr::{
    IA32_VMX_ENTRY_CTLS, IA32_VMX_EXIT_CTLS, IA32_VMX_PINBASED_CTLS, IA32_VMX_PROCBASED_CTLS,
    IA32_VMX_PROCBASED_CTLS2, IA32_VMX_TRUE_ENTRY_CTLS, IA32_VMX_TRUE_EXIT_CTLS,
    IA32_VMX_TRUE_PINBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS,
};

use crate::capabilities::ControlMsr;
use crate::cpu::Cpu;
use crate::error::{Error, Instruction, Result};
use crate::vmx_basic::{IA32_VMX_BASIC, VmxBasic};

/// A VMX control field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Control {
    /// The pin-based VM-execution controls.
    PinBased,
    /// The primary processor-based VM-execution controls.
    PrimaryProcessorBased,
    /// The secondary processor-based VM-execution controls.
    SecondaryProcessorBased,
    /// The VM-exit controls.
    VmExit,
    /// The VM-entry controls.
    VmEntry,
}

impl Control {
    /// Every control field, in the order of the SDM's "VM-Execution
    /// Control Fields", "VM-Exit Control Fields", "VM-Entry Control
    /// Fields".
    pub const ALL: [Self; 5] = [
        Self::PinBased,
        Self::PrimaryProcessorBased,
        Self::SecondaryProcessorBased,
        Self::VmExit,
        Self::VmEntry,
    ];

    /// The SDM's name of the field.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::PinBased => "pin-based VM-execution controls",
            Self::PrimaryProcessorBased => "primary processor-based VM-execution controls",
            Self::SecondaryProcessorBased => "secondary processor-based VM-execution controls",
            Self::VmExit => "VM-exit controls",
            Self::VmEntry => "VM-entry controls",
        }
    }

    /// The capability MSR that reports the default settings (and, without
    /// TRUE controls, the allowed settings).
    #[must_use]
    pub const fn msr(self) -> u32 {
        match self {
            Self::PinBased => IA32_VMX_PINBASED_CTLS,
            Self::PrimaryProcessorBased => IA32_VMX_PROCBASED_CTLS,
            Self::SecondaryProcessorBased => IA32_VMX_PROCBASED_CTLS2,
            Self::VmExit => IA32_VMX_EXIT_CTLS,
            Self::VmEntry => IA32_VMX_ENTRY_CTLS,
        }
    }

    /// The TRUE_* MSR that reports the allowed settings when IA32_VMX_BASIC
    /// bit 55 is 1; the secondary controls have none.
    #[must_use]
    pub const fn true_msr(self) -> Option<u32> {
        match self {
            Self::PinBased => Some(IA32_VMX_TRUE_PINBASED_CTLS),
            Self::PrimaryProcessorBased => Some(IA32_VMX_TRUE_PROCBASED_CTLS),
            Self::SecondaryProcessorBased => None,
            Self::VmExit => Some(IA32_VMX_TRUE_EXIT_CTLS),
            Self::VmEntry => Some(IA32_VMX_TRUE_ENTRY_CTLS),
        }
    }
}

impl core::fmt::Display for Control {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The pin-based control bits vmx-core names (SDM, "Pin-Based
/// VM-Execution Controls").
pub mod pin {
    /// Bit 0: external-interrupt exiting.
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    /// Bit 3: NMI exiting.
    pub const NMI_EXITING: u32 = 1 << 3;
    /// Bit 5: virtual NMIs.
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    /// Bit 6: activate VMX-preemption timer.
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
    /// Bit 7: process posted interrupts.
    pub const POSTED_INTERRUPTS: u32 = 1 << 7;
}

/// The primary processor-based control bits vmx-core names (SDM,
/// "Processor-Based VM-Execution Controls").
pub mod primary {
    /// Bit 2: interrupt-window exiting.
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    /// Bit 7: HLT exiting.
    pub const HLT_EXITING: u32 = 1 << 7;
    /// Bit 21: use TPR shadow.
    pub const USE_TPR_SHADOW: u32 = 1 << 21;
    /// Bit 22: NMI-window exiting.
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    /// Bit 25: use I/O bitmaps.
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    /// Bit 28: use MSR bitmaps.
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    /// Bit 31: activate secondary controls.
    pub const ACTIVATE_SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// The VM-exit control bits vmx-core names (SDM, "VM-Exit Controls").
pub mod exit {
    /// Bit 2: save debug controls.
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    /// Bit 9: host address-space size.
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    /// Bit 12: load IA32_PERF_GLOBAL_CTRL.
    pub const LOAD_PERF_GLOBAL_CTRL: u32 = 1 << 12;
    /// Bit 15: acknowledge interrupt on exit.
    pub const ACK_INTERRUPT_ON_EXIT: u32 = 1 << 15;
    /// Bit 18: save IA32_PAT.
    pub const SAVE_PAT: u32 = 1 << 18;
    /// Bit 19: load IA32_PAT.
    pub const LOAD_PAT: u32 = 1 << 19;
    /// Bit 20: save IA32_EFER.
    pub const SAVE_EFER: u32 = 1 << 20;
    /// Bit 21: load IA32_EFER.
    pub const LOAD_EFER: u32 = 1 << 21;
    /// Bit 22: save VMX-preemption timer value.
    pub const SAVE_PREEMPTION_TIMER: u32 = 1 << 22;
}

/// The VM-entry control bits vmx-core names (SDM, "VM-Entry Controls").
pub mod entry {
    /// Bit 2: load debug controls.
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    /// Bit 9: IA-32e mode guest.
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    /// Bit 10: entry to SMM.
    pub const ENTRY_TO_SMM: u32 = 1 << 10;
    /// Bit 11: deactivate dual-monitor treatment.
    pub const DEACTIVATE_DUAL_MONITOR: u32 = 1 << 11;
    /// Bit 13: load IA32_PERF_GLOBAL_CTRL.
    pub const LOAD_PERF_GLOBAL_CTRL: u32 = 1 << 13;
    /// Bit 14: load IA32_PAT.
    pub const LOAD_PAT: u32 = 1 << 14;
    /// Bit 15: load IA32_EFER.
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// What a processor allows for one control field: a bit set in
/// `must_be_one` must be 1, a bit clear in `may_be_one` must be 0, and
/// `default` is the setting of a control the hypervisor leaves alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowedSettings {
    /// The allowed 0-settings: bits that must be 1.
    pub must_be_one: u32,
    /// The allowed 1-settings: bits that may be 1.
    pub may_be_one: u32,
    /// The default settings: the ordinary MSR's bits 31:0 (the default1
    /// controls are 1 there).
    pub default: u32,
}

impl AllowedSettings {
    /// From the ordinary capability MSR and, when IA32_VMX_BASIC bit 55 is
    /// 1, the TRUE one: the allowed settings are the TRUE MSR's, the
    /// defaults the ordinary MSR's allowed 0-settings.
    #[must_use]
    pub const fn new(msr: ControlMsr, true_msr: Option<ControlMsr>) -> Self {
        let allowed = match true_msr {
            Some(true_msr) => true_msr,
            None => msr,
        };
        Self {
            must_be_one: allowed.must_be_one(),
            may_be_one: allowed.may_be_one(),
            default: msr.must_be_one(),
        }
    }

    /// No control may be 1: a field the processor does not have (the
    /// secondary controls when "activate secondary controls" may not be 1).
    pub const NONE: Self = Self {
        must_be_one: 0,
        may_be_one: 0,
        default: 0,
    };

    /// Whether `value` respects the allowed settings.
    #[must_use]
    pub const fn allows(self, value: u32) -> bool {
        value & self.must_be_one == self.must_be_one && value & !self.may_be_one == 0
    }

    /// The lowest bit of `value` outside the allowed settings, and its
    /// setting in `value`.
    #[must_use]
    pub const fn first_violation(self, value: u32) -> Option<(u8, bool)> {
        let missing = self.must_be_one & !value;
        let forbidden = value & !self.may_be_one;
        match (missing, forbidden) {
            (0, 0) => None,
            (m, f) if f == 0 || (m != 0 && m.trailing_zeros() < f.trailing_zeros()) => {
                Some((m.trailing_zeros() as u8, false))
            }
            (_, f) => Some((f.trailing_zeros() as u8, true)),
        }
    }
}

/// What a hypervisor asks of one control field: `wanted` are the controls
/// it would like to be 1; `required` are the controls whose setting in
/// `wanted` it cannot do without (1 or 0). Every control that is in neither
/// takes its default setting, or the one the processor fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ControlRequest {
    /// Controls to set to 1 where allowed.
    pub wanted: u32,
    /// Controls whose setting in `wanted` must hold.
    pub required: u32,
}

impl ControlRequest {
    /// Requires exactly the controls `one` to be 1 (and wants nothing else).
    #[must_use]
    pub const fn requiring(one: u32) -> Self {
        Self {
            wanted: one,
            required: one,
        }
    }

    /// The value to write for `control`, following the SDM's algorithm.
    ///
    /// # Errors
    /// [`Error::ControlNotAllowed`] for the lowest required bit whose
    /// setting the processor does not allow.
    pub fn compute(self, control: Control, allowed: AllowedSettings) -> Result<u32> {
        let fixed_one = allowed.must_be_one;
        let fixed_zero = !allowed.may_be_one;
        let required_one = self.required & self.wanted;
        let required_zero = self.required & !self.wanted;
        let refused = (required_one & fixed_zero) | (required_zero & fixed_one);
        if refused != 0 {
            let bit = refused.trailing_zeros();
            return Err(Error::ControlNotAllowed {
                control,
                bit: bit as u8,
                setting: required_one & (1 << bit) != 0,
            });
        }
        let flexible = !fixed_one & !fixed_zero;
        // Fixed bits as fixed; wanted bits where flexible (the required
        // ones are, as checked above); bits left alone at their default
        // where flexible. Required-0 bits end up 0.
        let alone = !(self.wanted | self.required);
        let value = fixed_one | (self.wanted & flexible) | (alone & allowed.default & flexible);
        Ok(value & !fixed_zero)
    }
}

/// The allowed settings of every control field of a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlCapabilities {
    /// Pin-based.
    pub pin_based: AllowedSettings,
    /// Primary processor-based.
    pub primary: AllowedSettings,
    /// Secondary processor-based ([`AllowedSettings::NONE`] when "activate
    /// secondary controls" may not be 1: IA32_VMX_PROCBASED_CTLS2 does not
    /// exist then).
    pub secondary: AllowedSettings,
    /// VM-exit.
    pub exit: AllowedSettings,
    /// VM-entry.
    pub entry: AllowedSettings,
}

impl ControlCapabilities {
    /// Reads the capability MSRs: the TRUE_* MSRs only when IA32_VMX_BASIC
    /// bit 55 says they exist, IA32_VMX_PROCBASED_CTLS2 only when
    /// IA32_VMX_PROCBASED_CTLS allows "activate secondary controls".
    ///
    /// # Errors
    /// [`Error::Faulted`] when an RDMSR faults.
    pub fn read<C: Cpu + ?Sized>(cpu: &mut C) -> Result<Self> {
        let mut read = |msr| {
            cpu.read_msr(msr).map_err(|fault| Error::Faulted {
                instruction: Instruction::Rdmsr(msr),
                fault,
            })
        };
        let basic = VmxBasic::from_raw(read(IA32_VMX_BASIC)?);
        let mut settings = |control: Control| -> Result<AllowedSettings> {
            let msr = ControlMsr::from_raw(read(control.msr())?);
            let true_msr = match control.true_msr() {
                Some(true_msr) if basic.true_controls() => {
                    Some(ControlMsr::from_raw(read(true_msr)?))
                }
                _ => None,
            };
            Ok(AllowedSettings::new(msr, true_msr))
        };
        let pin_based = settings(Control::PinBased)?;
        let primary = settings(Control::PrimaryProcessorBased)?;
        let secondary = if primary.may_be_one & primary::ACTIVATE_SECONDARY_CONTROLS != 0 {
            settings(Control::SecondaryProcessorBased)?
        } else {
            AllowedSettings::NONE
        };
        Ok(Self {
            pin_based,
            primary,
            secondary,
            exit: settings(Control::VmExit)?,
            entry: settings(Control::VmEntry)?,
        })
    }

    /// The allowed settings of `control`.
    #[must_use]
    pub const fn of(&self, control: Control) -> AllowedSettings {
        match control {
            Control::PinBased => self.pin_based,
            Control::PrimaryProcessorBased => self.primary,
            Control::SecondaryProcessorBased => self.secondary,
            Control::VmExit => self.exit,
            Control::VmEntry => self.entry,
        }
    }
}

/// The values of the five control fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Controls {
    /// Pin-based VM-execution controls.
    pub pin_based: u32,
    /// Primary processor-based VM-execution controls.
    pub primary: u32,
    /// Secondary processor-based VM-execution controls (written only when
    /// the primary controls activate them).
    pub secondary: u32,
    /// VM-exit controls.
    pub exit: u32,
    /// VM-entry controls.
    pub entry: u32,
}

impl Controls {
    /// The value of `control`.
    #[must_use]
    pub const fn of(&self, control: Control) -> u32 {
        match control {
            Control::PinBased => self.pin_based,
            Control::PrimaryProcessorBased => self.primary,
            Control::SecondaryProcessorBased => self.secondary,
            Control::VmExit => self.exit,
            Control::VmEntry => self.entry,
        }
    }

    /// Computes every field from one request each. Secondary controls
    /// asked for (any bit wanted) make "activate secondary controls" a
    /// required primary control.
    ///
    /// # Errors
    /// [`Error::ControlNotAllowed`] for the first field, in
    /// [`Control::ALL`] order, with a required setting the processor does
    /// not allow.
    pub fn compute(
        capabilities: &ControlCapabilities,
        requests: [ControlRequest; 5],
    ) -> Result<Self> {
        let [pin, mut primary_request, secondary, exit, entry] = requests;
        if secondary.wanted != 0 {
            primary_request.wanted |= primary::ACTIVATE_SECONDARY_CONTROLS;
            primary_request.required |= primary::ACTIVATE_SECONDARY_CONTROLS;
        }
        let primary =
            primary_request.compute(Control::PrimaryProcessorBased, capabilities.primary)?;
        let secondary = if primary & primary::ACTIVATE_SECONDARY_CONTROLS != 0 {
            secondary.compute(Control::SecondaryProcessorBased, capabilities.secondary)?
        } else {
            0
        };
        Ok(Self {
            pin_based: pin.compute(Control::PinBased, capabilities.pin_based)?,
            primary,
            secondary,
            exit: exit.compute(Control::VmExit, capabilities.exit)?,
            entry: entry.compute(Control::VmEntry, capabilities.entry)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bochs' corei7_skylake_x: IA32_VMX_PINBASED_CTLS and its TRUE MSR
    /// (bits 1, 2, 4 default1 and flexible in TRUE).
    fn skylake_pin() -> AllowedSettings {
        AllowedSettings::new(
            ControlMsr::from_raw(0x0000_00ff_0000_0016),
            Some(ControlMsr::from_raw(0x0000_00ff_0000_0000)),
        )
    }

    #[test]
    fn controls_left_alone_take_their_default_and_wanted_ones_are_set() {
        let allowed = skylake_pin();
        let request = ControlRequest {
            wanted: pin::NMI_EXITING,
            required: 0,
        };
        assert_eq!(request.compute(Control::PinBased, allowed), Ok(0x16 | 0x8));
        // Required 0 on a default1 bit that TRUE leaves flexible: 0.
        let request = ControlRequest {
            wanted: 0,
            required: 1 << 1,
        };
        assert_eq!(request.compute(Control::PinBased, allowed), Ok(0x14));
    }

    #[test]
    fn without_true_controls_default1_bits_are_fixed() {
        let allowed = AllowedSettings::new(ControlMsr::from_raw(0x0000_00ff_0000_0016), None);
        let request = ControlRequest {
            wanted: 0,
            required: 1 << 2,
        };
        assert_eq!(
            request.compute(Control::PinBased, allowed),
            Err(Error::ControlNotAllowed {
                control: Control::PinBased,
                bit: 2,
                setting: false
            })
        );
        // Wanted (not required) 0: the processor's fixed 1 wins quietly.
        assert_eq!(
            ControlRequest::default().compute(Control::PinBased, allowed),
            Ok(0x16)
        );
    }

    #[test]
    fn a_required_one_the_processor_forbids_names_control_and_bit() {
        let allowed = skylake_pin();
        let request = ControlRequest::requiring(pin::POSTED_INTERRUPTS << 1);
        assert_eq!(
            request.compute(Control::PinBased, allowed),
            Err(Error::ControlNotAllowed {
                control: Control::PinBased,
                bit: 8,
                setting: true
            })
        );
        // Wanted but not required: dropped.
        let request = ControlRequest {
            wanted: 1 << 8 | pin::NMI_EXITING,
            required: 0,
        };
        assert_eq!(request.compute(Control::PinBased, allowed), Ok(0x1e));
        let message = std::format!(
            "{}",
            Error::ControlNotAllowed {
                control: Control::VmEntry,
                bit: 9,
                setting: true
            }
        );
        assert!(
            message.contains("VM-entry controls") && message.contains("bit 9"),
            "{message}"
        );
    }

    #[test]
    fn first_violation_reports_the_lowest_bit() {
        let allowed = AllowedSettings {
            must_be_one: 0b0110,
            may_be_one: 0xff,
            default: 0b0110,
        };
        assert_eq!(allowed.first_violation(0b0110), None);
        assert_eq!(allowed.first_violation(0b0100), Some((1, false)));
        assert_eq!(allowed.first_violation(0x106), Some((8, true)));
        assert!(!allowed.allows(0x106));
    }

    #[test]
    fn secondary_controls_activate_themselves_and_are_read_only_when_they_exist() {
        use crate::sim::SimCpu;
        // Bochs' corei7_skylake_x allows secondary controls: read.
        let mut cpu = SimCpu::skylake();
        let caps = ControlCapabilities::read(&mut cpu).unwrap();
        assert!(
            cpu.ops
                .contains(&crate::sim::Op::ReadMsr(IA32_VMX_PROCBASED_CTLS2))
        );
        assert_eq!(caps.secondary.may_be_one, 0x0217_7fff);
        let unrestricted = [
            ControlRequest::default(),
            ControlRequest::default(),
            ControlRequest::requiring(1 << 7),
            ControlRequest::default(),
            ControlRequest::default(),
        ];
        let controls = Controls::compute(&caps, unrestricted).unwrap();
        assert_eq!(controls.secondary, 1 << 7);
        assert_ne!(controls.primary & primary::ACTIVATE_SECONDARY_CONTROLS, 0);
        // A processor without them (bit 63 of both PROCBASED MSRs clear):
        // IA32_VMX_PROCBASED_CTLS2 is never read.
        let mut cpu = SimCpu::skylake();
        cpu.msr_overrides = std::vec![
            (0x482, 0x77f9_fffe_0401_e172),
            (0x48e, 0x77f9_fffe_0400_6172)
        ];
        let caps = ControlCapabilities::read(&mut cpu).unwrap();
        assert_eq!(
            caps.primary.may_be_one & primary::ACTIVATE_SECONDARY_CONTROLS,
            0
        );
        assert_eq!(caps.secondary, AllowedSettings::NONE);
        assert!(
            !cpu.ops
                .contains(&crate::sim::Op::ReadMsr(IA32_VMX_PROCBASED_CTLS2))
        );
        let requests = [
            ControlRequest::default(),
            ControlRequest::default(),
            ControlRequest::requiring(1 << 1),
            ControlRequest::default(),
            ControlRequest::default(),
        ];
        assert_eq!(
            Controls::compute(&caps, requests),
            Err(Error::ControlNotAllowed {
                control: Control::PrimaryProcessorBased,
                bit: 31,
                setting: true
            })
        );
    }
}
