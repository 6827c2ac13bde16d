//! The reply to STATUS: the header, then one 32-byte entry per processor,
//! in processor order.
//!
//! | offset in entry | size | field |
//! |---|---|---|
//! | 0 | 4 | 0 off, 1 in VMX operation |
//! | 4 | 4 | VMCS revision identifier in the VMXON region (0 when off) |
//! | 8 | 8 | VMXON region's physical address (0 when off) |
//! | 16 | 8 | CR0 before entering (0 when off) |
//! | 24 | 8 | CR4 before entering (0 when off) |

use vmx_core::ProcessorStatus;
use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::layout::StatusEntryLayout;
use crate::reply::{DecodeError, ReplyHeader};
use crate::wire::to_u32;

/// One processor's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusEntry(pub ProcessorStatus);

impl StatusEntry {
    /// The size of one entry.
    pub const SIZE: usize = core::mem::size_of::<StatusEntryLayout>();

    /// The size of the whole reply for `processors` processors, or `None`
    /// when it does not fit the protocol's 32-bit size field.
    #[must_use]
    pub fn reply_size(processors: usize) -> Option<usize> {
        let size = processors
            .checked_mul(Self::SIZE)?
            .checked_add(ReplyHeader::SIZE)?;
        u32::try_from(size).ok().map(|_| size)
    }

    /// Writes the entry into `bytes[..SIZE]`; nothing when shorter.
    pub fn encode(&self, bytes: &mut [u8]) {
        // A shorter `bytes` is left untouched, as documented.
        let _ = self.layout().write_to_prefix(bytes);
    }

    /// The entry as its wire layout (all zero when off).
    #[must_use]
    pub fn layout(&self) -> StatusEntryLayout {
        match self.0 {
            ProcessorStatus::Off => StatusEntryLayout::new_zeroed(),
            ProcessorStatus::On {
                region,
                revision_id,
                original_cr0,
                original_cr4,
            } => StatusEntryLayout {
                state: U32::new(1),
                revision_id: U32::new(revision_id),
                region: U64::new(region),
                original_cr0: U64::new(original_cr0),
                original_cr4: U64::new(original_cr4),
            },
        }
    }

    /// Decodes one entry; `None` for a short slice, an unknown state or an
    /// "off" entry with values.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (entry, _) = StatusEntryLayout::read_from_prefix(bytes).ok()?;
        match entry.state.get() {
            0 if entry.as_bytes().iter().all(|b| *b == 0) => Some(Self(ProcessorStatus::Off)),
            1 => Some(Self(ProcessorStatus::On {
                revision_id: entry.revision_id.get(),
                region: entry.region.get(),
                original_cr0: entry.original_cr0.get(),
                original_cr4: entry.original_cr4.get(),
            })),
            _ => None,
        }
    }

    /// Writes a whole reply for `statuses` into `bytes`, which must hold
    /// [`StatusEntry::reply_size`] bytes; returns the bytes written, or
    /// `None` (nothing written) when `bytes` is too short.
    pub fn encode_reply(
        statuses: impl ExactSizeIterator<Item = ProcessorStatus>,
        bytes: &mut [u8],
    ) -> Option<usize> {
        let count = statuses.len();
        let size = Self::reply_size(count)?;
        let out = bytes.get_mut(..size)?;
        ReplyHeader::new(to_u32(size), to_u32(count)).encode(out);
        for (status, entry) in statuses.zip(out[ReplyHeader::SIZE..].chunks_exact_mut(Self::SIZE)) {
            Self(status).encode(entry);
        }
        Some(size)
    }

    /// Decodes a whole reply, checking every entry first.
    ///
    /// # Errors
    /// A header error, a size that does not match the processor count, or
    /// a malformed entry.
    pub fn decode_reply(
        bytes: &[u8],
    ) -> Result<
        (
            ReplyHeader,
            impl ExactSizeIterator<Item = ProcessorStatus> + '_,
        ),
        DecodeError,
    > {
        let header = ReplyHeader::decode_whole(bytes)?;
        if Self::reply_size(header.processors as usize) != Some(bytes.len()) {
            return Err(DecodeError::Malformed { offset: 8 });
        }
        let entries = bytes[ReplyHeader::SIZE..].chunks_exact(Self::SIZE);
        for (index, entry) in entries.clone().enumerate() {
            if Self::decode(entry).is_none() {
                return Err(DecodeError::Malformed {
                    offset: ReplyHeader::SIZE + index * Self::SIZE,
                });
            }
        }
        Ok((
            header,
            entries.map(|entry| Self::decode(entry).map_or(ProcessorStatus::Off, |e| e.0)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn on(n: u64) -> ProcessorStatus {
        ProcessorStatus::On {
            region: 0x1000 * n,
            revision_id: 0x2b,
            original_cr0: 0x8005_0033,
            original_cr4: 0x0035_06f8,
        }
    }

    #[test]
    fn a_reply_round_trips_in_processor_order() {
        let statuses = [on(1), ProcessorStatus::Off, on(3)];
        let mut bytes = [0xffu8; 16 + 3 * 32];
        assert_eq!(
            StatusEntry::encode_reply(statuses.into_iter(), &mut bytes),
            Some(112)
        );
        let (header, decoded) = StatusEntry::decode_reply(&bytes).unwrap();
        assert_eq!(header, ReplyHeader::new(112, 3));
        assert_eq!(decoded.collect::<Vec<_>>(), statuses);
        assert_eq!(&bytes[16..24], &[1, 0, 0, 0, 0x2b, 0, 0, 0]);
        assert_eq!(&bytes[48..80], &[0; 32]);
    }

    #[test]
    fn a_short_buffer_gets_nothing() {
        let mut bytes = [0x11u8; 16 + 32 - 1];
        assert_eq!(
            StatusEntry::encode_reply([ProcessorStatus::Off].into_iter(), &mut bytes),
            None
        );
        assert!(bytes.iter().all(|b| *b == 0x11));
    }

    #[test]
    fn malformed_entries_and_counts_are_refused() {
        let mut bytes = [0u8; 16 + 2 * 32];
        StatusEntry::encode_reply([on(1), ProcessorStatus::Off].into_iter(), &mut bytes).unwrap();
        let mut bad_state = bytes;
        bad_state[16] = 2;
        assert_eq!(
            StatusEntry::decode_reply(&bad_state).err(),
            Some(DecodeError::Malformed { offset: 16 })
        );
        let mut off_with_value = bytes;
        off_with_value[48 + 8] = 1;
        assert_eq!(
            StatusEntry::decode_reply(&off_with_value).err(),
            Some(DecodeError::Malformed { offset: 48 })
        );
        let mut wrong_count = bytes;
        wrong_count[8] = 3;
        assert_eq!(
            StatusEntry::decode_reply(&wrong_count).err(),
            Some(DecodeError::Malformed { offset: 8 })
        );
    }

    #[test]
    fn the_reply_size_is_bounded_by_the_size_field() {
        assert_eq!(StatusEntry::reply_size(0), Some(16));
        assert_eq!(StatusEntry::reply_size(2048), Some(16 + 65536));
        assert_eq!(StatusEntry::reply_size(usize::MAX / 16), None);
    }
}
