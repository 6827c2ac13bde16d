//! CR0 and CR4 fixed bits (SDM Appendix A, "VMX-Fixed Bits in CR0" and
//! "VMX-Fixed Bits in CR4").

pub use x86::msr::{
    IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1,
};

/// CR0.PE, protection enable (bit 0).
pub const CR0_PE: u64 = 1 << 0;
/// CR0.NE, numeric error (bit 5): fixed to 1 in VMX operation on every
/// processor so far; GRUB leaves it clear.
pub const CR0_NE: u64 = 1 << 5;
/// CR0.PG, paging (bit 31).
pub const CR0_PG: u64 = 1 << 31;
/// CR4.VMXE, VMX enable (bit 13).
pub const CR4_VMXE: u64 = 1 << 13;
/// CR4.SMXE, SMX enable (bit 14).
pub const CR4_SMXE: u64 = 1 << 14;

/// The SDM's name of a CR0 or CR4 bit ("Control Registers"), or `"bit"`
/// for one without a name.
#[must_use]
pub const fn bit_name(register: ControlRegister, bit: u8) -> &'static str {
    match (register, bit) {
        (ControlRegister::Cr0, 0) => "PE",
        (ControlRegister::Cr0, 1) => "MP",
        (ControlRegister::Cr0, 2) => "EM",
        (ControlRegister::Cr0, 3) => "TS",
        (ControlRegister::Cr0, 4) => "ET",
        (ControlRegister::Cr0, 5) => "NE",
        (ControlRegister::Cr0, 16) => "WP",
        (ControlRegister::Cr0, 18) => "AM",
        (ControlRegister::Cr0, 29) => "NW",
        (ControlRegister::Cr0, 30) => "CD",
        (ControlRegister::Cr0, 31) => "PG",
        (ControlRegister::Cr4, 0) => "VME",
        (ControlRegister::Cr4, 1) => "PVI",
        (ControlRegister::Cr4, 2) => "TSD",
        (ControlRegister::Cr4, 3) => "DE",
        (ControlRegister::Cr4, 4) => "PSE",
        (ControlRegister::Cr4, 5) => "PAE",
        (ControlRegister::Cr4, 6) => "MCE",
        (ControlRegister::Cr4, 7) => "PGE",
        (ControlRegister::Cr4, 8) => "PCE",
        (ControlRegister::Cr4, 9) => "OSFXSR",
        (ControlRegister::Cr4, 10) => "OSXMMEXCPT",
        (ControlRegister::Cr4, 11) => "UMIP",
        (ControlRegister::Cr4, 12) => "LA57",
        (ControlRegister::Cr4, 13) => "VMXE",
        (ControlRegister::Cr4, 14) => "SMXE",
        (ControlRegister::Cr4, 16) => "FSGSBASE",
        (ControlRegister::Cr4, 17) => "PCIDE",
        (ControlRegister::Cr4, 18) => "OSXSAVE",
        (ControlRegister::Cr4, 19) => "KL",
        (ControlRegister::Cr4, 20) => "SMEP",
        (ControlRegister::Cr4, 21) => "SMAP",
        (ControlRegister::Cr4, 22) => "PKE",
        (ControlRegister::Cr4, 23) => "CET",
        (ControlRegister::Cr4, 24) => "PKS",
        (ControlRegister::Cr4, 25) => "UINTR",
        _ => "bit",
    }
}

/// Which control register a fixed-bit pair constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRegister {
    /// CR0.
    Cr0,
    /// CR4.
    Cr4,
}

impl core::fmt::Display for ControlRegister {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Cr0 => "CR0",
            Self::Cr4 => "CR4",
        })
    }
}

/// The IA32_VMX_CRn_FIXED0 / FIXED1 pair of one control register.
///
/// The SDM: "If bit X is 1 in IA32_VMX_CR0_FIXED0, then that bit of CR0 is
/// fixed to 1 in VMX operation. Similarly, if bit X is 0 in
/// IA32_VMX_CR0_FIXED1, then that bit of CR0 is fixed to 0 in VMX
/// operation." As a truth table for one bit:
///
/// | FIXED0 | FIXED1 | the bit in VMX operation |
/// |---|---|---|
/// | 1 | 1 | must be 1 |
/// | 0 | 0 | must be 0 |
/// | 0 | 1 | free |
/// | 1 | 0 | impossible: no value satisfies it |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedBits {
    fixed0: u64,
    fixed1: u64,
}

impl FixedBits {
    /// A pair read from IA32_VMX_CRn_FIXED0 and IA32_VMX_CRn_FIXED1.
    #[must_use]
    pub const fn new(fixed0: u64, fixed1: u64) -> Self {
        Self { fixed0, fixed1 }
    }

    /// FIXED0: the bits that must be 1.
    #[must_use]
    pub const fn must_be_one(self) -> u64 {
        self.fixed0
    }

    /// The complement of FIXED1: the bits that must be 0.
    #[must_use]
    pub const fn must_be_zero(self) -> u64 {
        !self.fixed1
    }

    /// Whether any value satisfies the pair (no bit is 1 in FIXED0 and 0 in
    /// FIXED1).
    #[must_use]
    pub const fn is_satisfiable(self) -> bool {
        self.fixed0 & !self.fixed1 == 0
    }

    /// `value` with the bits fixed to 1 set and the bits fixed to 0
    /// cleared: `(value | FIXED0) & FIXED1`.
    #[must_use]
    pub const fn adjust(self, value: u64) -> u64 {
        (value | self.fixed0) & self.fixed1
    }

    /// Whether `value` is allowed in VMX operation: no bit fixed to 1 is
    /// clear, and no bit fixed to 0 is set. Both halves are parenthesised
    /// on purpose: the C-precedence reading `!value & fixed0 == 0` compares
    /// before it masks.
    #[must_use]
    pub const fn allows(self, value: u64) -> bool {
        (!value & self.fixed0) == 0 && (value & !self.fixed1) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bochs corei7_skylake_x: CR0_FIXED0/1 and CR4_FIXED0/1.
    const CR0: FixedBits = FixedBits::new(0x8000_0021, 0xffff_ffff);
    const CR4: FixedBits = FixedBits::new(0x2000, 0x0037_27ff);

    #[test]
    fn adjusts_grub_cr0_by_setting_ne() {
        // CR0 in a kernel that GRUB booted under Bochs: NE clear.
        let cr0 = 0xe000_0011;
        assert!(!CR0.allows(cr0));
        assert_eq!(CR0.adjust(cr0), 0xe000_0031);
        assert!(CR0.allows(CR0.adjust(cr0)));
    }

    #[test]
    fn cr4_needs_vmxe_and_clears_reserved_bits() {
        let cr4 = 0x20;
        assert!(!CR4.allows(cr4));
        assert!(CR4.allows(cr4 | CR4_VMXE));
        assert_eq!(CR4.adjust(cr4), 0x2020);
        // A bit that FIXED1 forbids (bit 11 UMIP is not offered by this model).
        assert!(!CR4.allows(0x2020 | (1 << 11)));
        assert_eq!(CR4.adjust(0x2020 | (1 << 11)), 0x2020);
    }

    #[test]
    fn precedence_trap_values_are_rejected() {
        // Each value breaks one half only. A check written with C precedence,
        // `!v & fixed0 == 0` (comparison first), or one that tests a single
        // half, accepts one of them.
        let missing_must_be_one = 0x8000_0001; // NE clear
        let has_must_be_zero = 0x1_8000_0021; // bit 32 set, FIXED1 is 32-bit
        assert!(!CR0.allows(missing_must_be_one));
        assert!(!CR0.allows(has_must_be_zero));
        assert!(CR0.allows(0x8000_0021));
        // What `!v & (fixed0 == 0) as u64` would compute is 0 for every v:
        // always "valid".
        let c_precedence = |v: u64| (!v & u64::from(CR0.fixed0 == 0)) == 0;
        assert!(
            c_precedence(missing_must_be_one),
            "the trap accepts what we reject"
        );
    }

    #[test]
    fn adjusted_values_are_always_allowed_when_satisfiable() {
        let pairs = [
            CR0,
            CR4,
            FixedBits::new(0, u64::MAX),
            FixedBits::new(0xf0, 0xff),
        ];
        for pair in pairs {
            assert!(pair.is_satisfiable());
            for value in [0, u64::MAX, 0xe000_0011, 0x20, 0x5555_5555_5555_5555] {
                assert!(pair.allows(pair.adjust(value)), "{pair:?} {value:#x}");
            }
        }
        assert!(!FixedBits::new(0x1, 0x0).is_satisfiable());
    }
}
