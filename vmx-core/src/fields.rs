//! VMCS fields as typed encodings (SDM, "Field Encoding in VMCS", and the
//! appendix "Field Encoding in VMCS" that lists them). The numbers come
//! from the `x86` crate's `vmx::vmcs` module; the width, type and access
//! type are decoded from the encoding itself:
//!
//! | bits  | meaning |
//! |-------|---------|
//! | 0     | access type: 0 full, 1 high (the upper 32 bits of a 64-bit field) |
//! | 9:1   | index |
//! | 11:10 | type: 0 control, 1 VM-exit information (read-only), 2 guest state, 3 host state |
//! | 14:13 | width: 0 16-bit, 1 64-bit, 2 32-bit, 3 natural-width |

use x86::vmx::vmcs::{control, guest, host, ro};

/// A field's width (encoding bits 14:13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    /// 16 bits.
    Bits16,
    /// 64 bits.
    Bits64,
    /// 32 bits.
    Bits32,
    /// Natural width: 64 bits on a processor that supports Intel 64.
    Natural,
}

impl Width {
    /// The largest value a field of this width holds, on Intel 64.
    #[must_use]
    pub const fn max(self) -> u64 {
        match self {
            Self::Bits16 => 0xffff,
            Self::Bits32 => 0xffff_ffff,
            Self::Bits64 | Self::Natural => u64::MAX,
        }
    }
}

/// A field's type (encoding bits 11:10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// A control field.
    Control,
    /// A VM-exit information field: read-only (unless IA32_VMX_MISC bit 29
    /// allows VMWRITE to it).
    ReadOnlyData,
    /// A guest-state field.
    GuestState,
    /// A host-state field.
    HostState,
}

/// A VMCS field, by its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Field(u32);

impl Field {
    /// The field with this encoding.
    #[must_use]
    pub const fn from_encoding(encoding: u32) -> Self {
        Self(encoding)
    }

    /// The encoding, the operand of VMREAD and VMWRITE.
    #[must_use]
    pub const fn encoding(self) -> u32 {
        self.0
    }

    /// The width (bits 14:13). A high access (bit 0 set) of a 64-bit field
    /// reads 32 bits.
    #[must_use]
    pub const fn width(self) -> Width {
        match (self.0 >> 13) & 3 {
            0 => Width::Bits16,
            1 if self.is_high() => Width::Bits32,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        }
    }

    /// The type (bits 11:10).
    #[must_use]
    pub const fn field_type(self) -> FieldType {
        match (self.0 >> 10) & 3 {
            0 => FieldType::Control,
            1 => FieldType::ReadOnlyData,
            2 => FieldType::GuestState,
            _ => FieldType::HostState,
        }
    }

    /// Whether this is the high access of a 64-bit field (bit 0).
    #[must_use]
    pub const fn is_high(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether the encoding is one the SDM's format allows: bits 31:15 and
    /// 12 are 0, and only a 64-bit field has a high access.
    #[must_use]
    pub const fn is_well_formed(self) -> bool {
        self.0 & 0xffff_9000 == 0 && (!self.is_high() || (self.0 >> 13) & 3 == 1)
    }
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VMCS field {:#06x}", self.0)
    }
}

macro_rules! fields {
    ($($name:ident = $value:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`.")]
            pub const $name: Field = Field($value);
        )*
    };
}

fields! {
    PIN_BASED_VM_EXEC_CONTROL = control::PINBASED_EXEC_CONTROLS;
    CPU_BASED_VM_EXEC_CONTROL = control::PRIMARY_PROCBASED_EXEC_CONTROLS;
    SECONDARY_VM_EXEC_CONTROL = control::SECONDARY_PROCBASED_EXEC_CONTROLS;
    EXCEPTION_BITMAP = control::EXCEPTION_BITMAP;
    PAGE_FAULT_ERROR_CODE_MASK = control::PAGE_FAULT_ERR_CODE_MASK;
    PAGE_FAULT_ERROR_CODE_MATCH = control::PAGE_FAULT_ERR_CODE_MATCH;
    CR3_TARGET_COUNT = control::CR3_TARGET_COUNT;
    VM_EXIT_CONTROLS = control::VMEXIT_CONTROLS;
    VM_EXIT_MSR_STORE_COUNT = control::VMEXIT_MSR_STORE_COUNT;
    VM_EXIT_MSR_LOAD_COUNT = control::VMEXIT_MSR_LOAD_COUNT;
    VM_ENTRY_CONTROLS = control::VMENTRY_CONTROLS;
    VM_ENTRY_MSR_LOAD_COUNT = control::VMENTRY_MSR_LOAD_COUNT;
    VM_ENTRY_INTR_INFO_FIELD = control::VMENTRY_INTERRUPTION_INFO_FIELD;
    CR0_GUEST_HOST_MASK = control::CR0_GUEST_HOST_MASK;
    CR4_GUEST_HOST_MASK = control::CR4_GUEST_HOST_MASK;
    CR0_READ_SHADOW = control::CR0_READ_SHADOW;
    CR4_READ_SHADOW = control::CR4_READ_SHADOW;

    GUEST_ES_SELECTOR = guest::ES_SELECTOR;
    GUEST_CS_SELECTOR = guest::CS_SELECTOR;
    GUEST_SS_SELECTOR = guest::SS_SELECTOR;
    GUEST_DS_SELECTOR = guest::DS_SELECTOR;
    GUEST_FS_SELECTOR = guest::FS_SELECTOR;
    GUEST_GS_SELECTOR = guest::GS_SELECTOR;
    GUEST_LDTR_SELECTOR = guest::LDTR_SELECTOR;
    GUEST_TR_SELECTOR = guest::TR_SELECTOR;
    VMCS_LINK_POINTER = guest::LINK_PTR_FULL;
    GUEST_IA32_DEBUGCTL = guest::IA32_DEBUGCTL_FULL;
    GUEST_IA32_PAT = guest::IA32_PAT_FULL;
    GUEST_IA32_EFER = guest::IA32_EFER_FULL;
    GUEST_ES_LIMIT = guest::ES_LIMIT;
    GUEST_CS_LIMIT = guest::CS_LIMIT;
    GUEST_SS_LIMIT = guest::SS_LIMIT;
    GUEST_DS_LIMIT = guest::DS_LIMIT;
    GUEST_FS_LIMIT = guest::FS_LIMIT;
    GUEST_GS_LIMIT = guest::GS_LIMIT;
    GUEST_LDTR_LIMIT = guest::LDTR_LIMIT;
    GUEST_TR_LIMIT = guest::TR_LIMIT;
    GUEST_GDTR_LIMIT = guest::GDTR_LIMIT;
    GUEST_IDTR_LIMIT = guest::IDTR_LIMIT;
    GUEST_ES_AR_BYTES = guest::ES_ACCESS_RIGHTS;
    GUEST_CS_AR_BYTES = guest::CS_ACCESS_RIGHTS;
    GUEST_SS_AR_BYTES = guest::SS_ACCESS_RIGHTS;
    GUEST_DS_AR_BYTES = guest::DS_ACCESS_RIGHTS;
    GUEST_FS_AR_BYTES = guest::FS_ACCESS_RIGHTS;
    GUEST_GS_AR_BYTES = guest::GS_ACCESS_RIGHTS;
    GUEST_LDTR_AR_BYTES = guest::LDTR_ACCESS_RIGHTS;
    GUEST_TR_AR_BYTES = guest::TR_ACCESS_RIGHTS;
    GUEST_INTERRUPTIBILITY_INFO = guest::INTERRUPTIBILITY_STATE;
    GUEST_ACTIVITY_STATE = guest::ACTIVITY_STATE;
    GUEST_SYSENTER_CS = guest::IA32_SYSENTER_CS;
    GUEST_CR0 = guest::CR0;
    GUEST_CR3 = guest::CR3;
    GUEST_CR4 = guest::CR4;
    GUEST_ES_BASE = guest::ES_BASE;
    GUEST_CS_BASE = guest::CS_BASE;
    GUEST_SS_BASE = guest::SS_BASE;
    GUEST_DS_BASE = guest::DS_BASE;
    GUEST_FS_BASE = guest::FS_BASE;
    GUEST_GS_BASE = guest::GS_BASE;
    GUEST_LDTR_BASE = guest::LDTR_BASE;
    GUEST_TR_BASE = guest::TR_BASE;
    GUEST_GDTR_BASE = guest::GDTR_BASE;
    GUEST_IDTR_BASE = guest::IDTR_BASE;
    GUEST_DR7 = guest::DR7;
    GUEST_RSP = guest::RSP;
    GUEST_RIP = guest::RIP;
    GUEST_RFLAGS = guest::RFLAGS;
    GUEST_PENDING_DBG_EXCEPTIONS = guest::PENDING_DBG_EXCEPTIONS;
    GUEST_SYSENTER_ESP = guest::IA32_SYSENTER_ESP;
    GUEST_SYSENTER_EIP = guest::IA32_SYSENTER_EIP;

    HOST_ES_SELECTOR = host::ES_SELECTOR;
    HOST_CS_SELECTOR = host::CS_SELECTOR;
    HOST_SS_SELECTOR = host::SS_SELECTOR;
    HOST_DS_SELECTOR = host::DS_SELECTOR;
    HOST_FS_SELECTOR = host::FS_SELECTOR;
    HOST_GS_SELECTOR = host::GS_SELECTOR;
    HOST_TR_SELECTOR = host::TR_SELECTOR;
    HOST_IA32_PAT = host::IA32_PAT_FULL;
    HOST_IA32_EFER = host::IA32_EFER_FULL;
    HOST_IA32_SYSENTER_CS = host::IA32_SYSENTER_CS;
    HOST_CR0 = host::CR0;
    HOST_CR3 = host::CR3;
    HOST_CR4 = host::CR4;
    HOST_FS_BASE = host::FS_BASE;
    HOST_GS_BASE = host::GS_BASE;
    HOST_TR_BASE = host::TR_BASE;
    HOST_GDTR_BASE = host::GDTR_BASE;
    HOST_IDTR_BASE = host::IDTR_BASE;
    HOST_IA32_SYSENTER_ESP = host::IA32_SYSENTER_ESP;
    HOST_IA32_SYSENTER_EIP = host::IA32_SYSENTER_EIP;
    HOST_RSP = host::RSP;
    HOST_RIP = host::RIP;

    VM_INSTRUCTION_ERROR = ro::VM_INSTRUCTION_ERROR;
    VM_EXIT_REASON = ro::EXIT_REASON;
    VM_EXIT_INTR_INFO = ro::VMEXIT_INTERRUPTION_INFO;
    VM_EXIT_INSTRUCTION_LEN = ro::VMEXIT_INSTRUCTION_LEN;
    EXIT_QUALIFICATION = ro::EXIT_QUALIFICATION;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_type_and_access_come_from_the_encoding() {
        assert_eq!(GUEST_CS_SELECTOR.width(), Width::Bits16);
        assert_eq!(GUEST_CS_SELECTOR.field_type(), FieldType::GuestState);
        assert_eq!(VMCS_LINK_POINTER.width(), Width::Bits64);
        assert_eq!(Field::from_encoding(0x2801).width(), Width::Bits32);
        assert!(Field::from_encoding(0x2801).is_high());
        assert_eq!(PIN_BASED_VM_EXEC_CONTROL.width(), Width::Bits32);
        assert_eq!(PIN_BASED_VM_EXEC_CONTROL.field_type(), FieldType::Control);
        assert_eq!(HOST_RIP.width(), Width::Natural);
        assert_eq!(HOST_RIP.field_type(), FieldType::HostState);
        assert_eq!(VM_EXIT_REASON.field_type(), FieldType::ReadOnlyData);
        assert_eq!(EXIT_QUALIFICATION.width(), Width::Natural);
        assert!(HOST_RIP.is_well_formed());
        // A high access of a 32-bit field, bit 12, bits above 14: malformed.
        assert!(!Field::from_encoding(0x4001).is_well_formed());
        assert!(!Field::from_encoding(0x1000).is_well_formed());
        assert!(!Field::from_encoding(0x1_6c16).is_well_formed());
    }
}
