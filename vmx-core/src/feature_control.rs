//! IA32_FEATURE_CONTROL (MSR 0x3A): whether VMXON is allowed, and the
//! policy for locking it when firmware did not (SDM, "Enabling and Entering
//! VMX Operation").

use bitflags::bitflags;

pub use x86::msr::IA32_FEATURE_CONTROL;

bitflags! {
    /// The bits of IA32_FEATURE_CONTROL (SDM Vol. 4, "Architectural MSRs").
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct FeatureControlFlags: u64 {
        /// Bit 0: lock. "If the lock bit is clear, VMXON causes a
        /// general-protection exception"; once set, WRMSR to the MSR raises
        /// #GP until reset.
        const LOCK = 1 << 0;
        /// Bit 1: VMXON allowed inside SMX operation.
        const VMX_INSIDE_SMX = 1 << 1;
        /// Bit 2: VMXON allowed outside SMX operation.
        const VMX_OUTSIDE_SMX = 1 << 2;
        /// Bits 14:8: SENTER local function enables.
        const SENTER_LOCAL_FUNCTIONS = 0x7f << 8;
        /// Bit 15: SENTER global enable.
        const SENTER_GLOBAL = 1 << 15;
        /// Bit 17: SGX launch control enable.
        const SGX_LAUNCH_CONTROL = 1 << 17;
        /// Bit 18: SGX global enable.
        const SGX_GLOBAL = 1 << 18;
        /// Bit 20: LMCE on.
        const LMCE_ON = 1 << 20;
    }
}

/// What IA32_FEATURE_CONTROL allows, for software outside SMX operation.
///
/// SDM, "Enabling and Entering VMX Operation": VMXON inside SMX operation
/// (after GETSEC\[SENTER\], a measured launch such as tboot's) needs bit 1;
/// outside SMX operation, bit 2. CR4.SMXE alone does not say the processor
/// is in SMX operation. Without a measured launch, which is every case this
/// project meets, outside-SMX is the rule, and these states are decided by
/// it. Under a measured launch, a locked value with bit 1 set
/// ([`VmxOnlyInsideSmx`](Self::VmxOnlyInsideSmx) included) would allow
/// VMXON, and one with only bit 2 would not; vmx-core does not detect a
/// measured launch (Linux asks tboot) and does not claim either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureControlState {
    /// Locked with VMX-outside-SMX set: VMXON is allowed.
    Enabled,
    /// Locked with neither VMX bit set: firmware turned VT-x off, and only a
    /// firmware setting and a power cycle turn it on.
    DisabledByFirmware,
    /// Locked with only VMX-inside-SMX set (e.g. 0x3): VMX is enabled only
    /// inside SMX operation, that is, after a TXT measured launch; for an
    /// ordinary OS or driver VMXON raises #GP, as if VT-x were disabled.
    VmxOnlyInsideSmx,
    /// Not locked: the OS may enable VMX and lock the MSR (see
    /// [`FeatureControl::lock_value`]); VMXON faults until then.
    Unlocked,
}

impl FeatureControlState {
    /// A stable lowercase name: `enabled`, `disabled-by-firmware`,
    /// `vmx-only-inside-smx`, `unlocked`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::DisabledByFirmware => "disabled-by-firmware",
            Self::VmxOnlyInsideSmx => "vmx-only-inside-smx",
            Self::Unlocked => "unlocked",
        }
    }
}

/// A raw IA32_FEATURE_CONTROL value. Unknown bits are kept: they are
/// written back unchanged when the MSR is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureControl(u64);

impl FeatureControl {
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

    /// The bits, unknown ones retained.
    #[must_use]
    pub const fn flags(self) -> FeatureControlFlags {
        FeatureControlFlags::from_bits_retain(self.0)
    }

    /// Decodes the state.
    #[must_use]
    pub fn state(self) -> FeatureControlState {
        let flags = self.flags();
        if !flags.contains(FeatureControlFlags::LOCK) {
            FeatureControlState::Unlocked
        } else if flags.contains(FeatureControlFlags::VMX_OUTSIDE_SMX) {
            FeatureControlState::Enabled
        } else if flags.contains(FeatureControlFlags::VMX_INSIDE_SMX) {
            FeatureControlState::VmxOnlyInsideSmx
        } else {
            FeatureControlState::DisabledByFirmware
        }
    }

    /// The value to write to an unlocked MSR so that VMXON is allowed:
    /// every bit kept, plus lock and VMX-outside-SMX, plus VMX-inside-SMX
    /// when the processor supports SMX (`smx_supported`: CPUID.1:ECX.SMX,
    /// bit 6), so that a later measured launch (GETSEC\[SENTER\], as tboot
    /// does) keeps VMX. On a processor without SMX, setting bit 1 is a #GP.
    /// CR4.SMXE is not the test: it says SMX may be entered, not that it
    /// is supported or in use.
    ///
    /// Never the lock bit alone: a lock without an enable bit turns VT-x off
    /// until reset.
    #[must_use]
    pub fn lock_value(self, smx_supported: bool) -> u64 {
        let mut flags =
            self.flags() | FeatureControlFlags::LOCK | FeatureControlFlags::VMX_OUTSIDE_SMX;
        if smx_supported {
            flags |= FeatureControlFlags::VMX_INSIDE_SMX;
        }
        flags.bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_decode_from_lock_and_enable_bits() {
        // 0x5 is what Bochs' BIOS-bochs-latest leaves on corei7_skylake_x.
        assert_eq!(
            FeatureControl::from_raw(0x5).state(),
            FeatureControlState::Enabled
        );
        assert_eq!(
            FeatureControl::from_raw(0x7).state(),
            FeatureControlState::Enabled
        );
        assert_eq!(
            FeatureControl::from_raw(0x1).state(),
            FeatureControlState::DisabledByFirmware
        );
        assert_eq!(
            FeatureControl::from_raw(0xff01).state(),
            FeatureControlState::DisabledByFirmware
        );
        assert_eq!(
            FeatureControl::from_raw(0x3).state(),
            FeatureControlState::VmxOnlyInsideSmx
        );
        assert_eq!(
            FeatureControl::from_raw(0x0).state(),
            FeatureControlState::Unlocked
        );
        assert_eq!(
            FeatureControl::from_raw(0x4).state(),
            FeatureControlState::Unlocked
        );
    }

    #[test]
    fn lock_value_never_sets_lock_alone_and_keeps_other_bits() {
        for raw in [
            0u64,
            0x2,
            0x4,
            0x10_0000,
            0x6_0000,
            0xff00,
            0xdead_0000_0000_0000,
        ] {
            for smxe in [false, true] {
                let value = FeatureControl::from_raw(raw).lock_value(smxe);
                assert_eq!(value & raw, raw, "kept bits of {raw:#x}");
                assert_ne!(value & 1, 0);
                assert_ne!(value & 0x4, 0, "lock without VMX-outside-SMX");
                assert_eq!(value & 0x2 != 0, smxe || raw & 0x2 != 0);
                assert_eq!(value & !(raw | 0x7), 0, "no other bit added");
                assert_eq!(
                    FeatureControl::from_raw(value).state(),
                    FeatureControlState::Enabled
                );
            }
        }
    }
}
