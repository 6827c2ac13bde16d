//! The wire layouts as types: `#[repr(C)]` structures of little-endian
//! fields ([`zerocopy`]'s `U32`/`U64`, alignment 1, so any byte offset of
//! any buffer will do), read and written with `FromBytes`/`IntoBytes`. The
//! driver, the client and this documentation share them: a field's offset
//! is its place in the structure, checked at compile time against the
//! sizes below and by the tests against the tables in each module.
//!
//! The types describe bytes only. What a value means, and which values are
//! allowed (the version, zero reserved fields, tags, flags), is checked by
//! the decoders of [`Request`](crate::Request),
//! [`ReplyHeader`](crate::ReplyHeader), [`Outcome`](crate::Outcome),
//! [`StatusEntry`](crate::StatusEntry), [`WireError`](crate::WireError)
//! and [`QueryReader`](crate::QueryReader), which turn them into Rust
//! values: a layout is never handed out as a decoded value.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The request every IOCTL takes (see [`crate::request`]).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RequestLayout {
    /// The protocol version.
    pub version: U32,
    /// Reserved, 0.
    pub reserved: U32,
}

/// The header every reply starts with (see [`crate::reply`]).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HeaderLayout {
    /// The protocol version.
    pub version: U32,
    /// The size of the whole reply, this header included.
    pub size: U32,
    /// The number of logical processors.
    pub processors: U32,
    /// Reserved, 0.
    pub reserved: U32,
}

/// A `vmx_core::Error` on the wire (see [`crate::error_code`]).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ErrorLayout {
    /// The stable error code.
    pub code: U32,
    /// Reserved, 0.
    pub reserved: U32,
    /// The numbers the error carries.
    pub detail: [U64; 3],
}

/// The reply to ENTER and LEAVE (see [`crate::outcome`]).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct OutcomeLayout {
    /// The reply header.
    pub header: HeaderLayout,
    /// 0 success, 1 failure.
    pub result: U32,
    /// The processor that failed, `0xFFFF_FFFF` on success.
    pub processor: U32,
    /// Processors entered (ENTER) or left (LEAVE) by the call.
    pub changed: U32,
    /// Processors in VMX operation after the call.
    pub entered_after: U32,
    /// The error (code 0 on success).
    pub error: ErrorLayout,
}

/// One processor's entry in the reply to STATUS (see [`crate::status`]).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct StatusEntryLayout {
    /// 0 off, 1 in VMX operation.
    pub state: U32,
    /// The VMCS revision identifier in the VMXON region.
    pub revision_id: U32,
    /// The VMXON region's physical address.
    pub region: U64,
    /// CR0 before entering.
    pub original_cr0: U64,
    /// CR4 before entering.
    pub original_cr4: U64,
}

/// The fixed part of one processor's record in the reply to QUERY (see
/// [`crate::query`]).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordLayout {
    /// The processor index.
    pub index: U32,
    /// Bit 0: the driver could not run on this processor.
    pub flags: U32,
    /// The number of observations that follow.
    pub observations: U32,
    /// Reserved, 0.
    pub reserved: U32,
}

/// One observation in a QUERY record (see [`crate::query`]): a tag, its
/// key (CPUID leaf or MSR), the CPUID subleaf, and the value: CPUID's
/// EAX, EBX, ECX, EDX, or a 64-bit value in the first two words (low
/// word first).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ObservationLayout {
    /// What was observed.
    pub tag: U32,
    /// The CPUID leaf or the MSR; 0 for CR0 and CR4.
    pub key: U32,
    /// The CPUID subleaf; 0 otherwise.
    pub subleaf: U32,
    /// Reserved, 0.
    pub reserved: U32,
    /// The value.
    pub value: [U32; 4],
}

impl ObservationLayout {
    /// The 64-bit value in the first two words.
    #[must_use]
    pub fn value_u64(&self) -> u64 {
        (u64::from(self.value[1].get()) << 32) | u64::from(self.value[0].get())
    }

    /// Sets the first two words to `value` and the last two to 0.
    pub fn set_value_u64(&mut self, value: u64) {
        // Truncation intended: the low and the high word.
        self.value = [
            U32::new(value as u32),
            U32::new((value >> 32) as u32),
            U32::ZERO,
            U32::ZERO,
        ];
    }
}

// The sizes the module tables document, checked at compile time.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<RequestLayout>() == 8);
    assert!(size_of::<HeaderLayout>() == 16);
    assert!(size_of::<ErrorLayout>() == 32);
    assert!(size_of::<OutcomeLayout>() == 64);
    assert!(size_of::<StatusEntryLayout>() == 32);
    assert!(size_of::<RecordLayout>() == 16);
    assert!(size_of::<ObservationLayout>() == 32);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn every_offset_is_the_one_the_tables_document() {
        assert_eq!(offset_of!(RequestLayout, reserved), 4);
        assert_eq!(
            [
                offset_of!(HeaderLayout, size),
                offset_of!(HeaderLayout, processors),
                offset_of!(HeaderLayout, reserved),
            ],
            [4, 8, 12]
        );
        assert_eq!(
            [
                offset_of!(ErrorLayout, reserved),
                offset_of!(ErrorLayout, detail),
            ],
            [4, 8]
        );
        assert_eq!(
            [
                offset_of!(OutcomeLayout, result),
                offset_of!(OutcomeLayout, processor),
                offset_of!(OutcomeLayout, changed),
                offset_of!(OutcomeLayout, entered_after),
                offset_of!(OutcomeLayout, error),
            ],
            [16, 20, 24, 28, 32]
        );
        assert_eq!(
            [
                offset_of!(StatusEntryLayout, revision_id),
                offset_of!(StatusEntryLayout, region),
                offset_of!(StatusEntryLayout, original_cr0),
                offset_of!(StatusEntryLayout, original_cr4),
            ],
            [4, 8, 16, 24]
        );
        assert_eq!(
            [
                offset_of!(RecordLayout, flags),
                offset_of!(RecordLayout, observations),
                offset_of!(RecordLayout, reserved),
            ],
            [4, 8, 12]
        );
        assert_eq!(
            [
                offset_of!(ObservationLayout, key),
                offset_of!(ObservationLayout, subleaf),
                offset_of!(ObservationLayout, reserved),
                offset_of!(ObservationLayout, value),
            ],
            [4, 8, 12, 16]
        );
    }

    #[test]
    fn fields_are_little_endian_at_any_alignment() {
        let header = HeaderLayout {
            version: U32::new(1),
            size: U32::new(0x0102_0304),
            processors: U32::new(2),
            reserved: U32::ZERO,
        };
        let mut bytes = [0xffu8; 17];
        // One byte in: the layouts have alignment 1.
        header.write_to_prefix(&mut bytes[1..]).unwrap();
        assert_eq!(&bytes[1..9], &[1, 0, 0, 0, 4, 3, 2, 1]);
        let (read, rest) = HeaderLayout::read_from_prefix(&bytes[1..]).unwrap();
        assert_eq!(read.size.get(), 0x0102_0304);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_64_bit_value_is_low_word_first() {
        let mut observation = ObservationLayout::default();
        observation.set_value_u64(0x1122_3344_5566_7788);
        assert_eq!(
            &observation.as_bytes()[16..32],
            &[
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(observation.value_u64(), 0x1122_3344_5566_7788);
    }
}
