//! The header every reply starts with: 16 bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | protocol version ([`PROTOCOL_VERSION`]) |
//! | 4 | 4 | size of the whole reply in bytes, this header included |
//! | 8 | 4 | number of logical processors |
//! | 12 | 4 | reserved, 0 |
//!
//! ## Buffer sizes: the two-call pattern
//!
//! * An output buffer shorter than [`ReplyHeader::SIZE`] is refused with
//!   `STATUS_BUFFER_TOO_SMALL` (Win32 `ERROR_INSUFFICIENT_BUFFER`), zero
//!   bytes returned, nothing done.
//! * A buffer that holds the header but not the whole reply gets the header
//!   alone with `STATUS_BUFFER_OVERFLOW` (a warning: the I/O manager copies
//!   the header out; `DeviceIoControl` fails with `ERROR_MORE_DATA` and
//!   returns 16 bytes). Nothing is done: ENTER and LEAVE check the size
//!   before they act. The caller allocates [`ReplyHeader::size`] bytes and
//!   asks again; QUERY's size can change between calls (a processor that
//!   entered VMX operation reports differently), so a caller loops a few
//!   times.
//! * Otherwise the reply is written whole, with `STATUS_SUCCESS`, and the
//!   bytes returned are exactly [`ReplyHeader::size`].

use core::mem::offset_of;

use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

use crate::PROTOCOL_VERSION;
use crate::layout::HeaderLayout;

/// The common reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyHeader {
    /// The protocol version of the reply.
    pub version: u32,
    /// The size of the whole reply, header included.
    pub size: u32,
    /// The number of logical processors the driver drives.
    pub processors: u32,
}

/// Why a reply could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The bytes are fewer than the fixed part needs.
    TooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        length: usize,
    },
    /// The header names another protocol version.
    VersionMismatch {
        /// The version found.
        found: u32,
    },
    /// The bytes given are not the size the header names: the buffer was
    /// too small (ask again with [`ReplyHeader::size`] bytes), or the reply
    /// is corrupt.
    SizeMismatch {
        /// The size the header names.
        size: u32,
        /// Bytes given.
        length: usize,
    },
    /// A field holds a value the protocol does not allow.
    Malformed {
        /// The byte offset of the field.
        offset: usize,
    },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort { needed, length } => {
                write!(f, "the reply is {length} bytes, at least {needed} expected")
            }
            Self::VersionMismatch { found } => write!(
                f,
                "the driver speaks protocol version {found}, this program {PROTOCOL_VERSION}: \
                 build the driver and the program from the same source"
            ),
            Self::SizeMismatch { size, length } => {
                write!(f, "the reply is {length} bytes, its header says {size}")
            }
            Self::Malformed { offset } => write!(f, "the reply is malformed at byte {offset}"),
        }
    }
}

impl ReplyHeader {
    /// The size of the header in bytes.
    pub const SIZE: usize = core::mem::size_of::<HeaderLayout>();

    /// A header for a reply of `size` bytes about `processors` processors.
    #[must_use]
    pub const fn new(size: u32, processors: u32) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            size,
            processors,
        }
    }

    /// Writes the header into `bytes[..SIZE]`; nothing when `bytes` is
    /// shorter.
    pub fn encode(&self, bytes: &mut [u8]) {
        // A shorter `bytes` is left untouched, as documented.
        let _ = self.layout().write_to_prefix(bytes);
    }

    /// The header as its wire layout.
    #[must_use]
    pub fn layout(&self) -> HeaderLayout {
        HeaderLayout {
            version: U32::new(self.version),
            size: U32::new(self.size),
            processors: U32::new(self.processors),
            reserved: U32::ZERO,
        }
    }

    /// Decodes the header at the start of `bytes` (which may be only the
    /// header, after `ERROR_MORE_DATA`).
    ///
    /// # Errors
    /// [`DecodeError::TooShort`], [`DecodeError::VersionMismatch`],
    /// [`DecodeError::Malformed`] (reserved field, or a size smaller than
    /// the header).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (layout, _) =
            HeaderLayout::read_from_prefix(bytes).map_err(|_| DecodeError::TooShort {
                needed: Self::SIZE,
                length: bytes.len(),
            })?;
        let version = layout.version.get();
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::VersionMismatch { found: version });
        }
        let size = layout.size.get();
        if (size as usize) < Self::SIZE {
            return Err(DecodeError::Malformed {
                offset: offset_of!(HeaderLayout, size),
            });
        }
        if layout.reserved != 0 {
            return Err(DecodeError::Malformed {
                offset: offset_of!(HeaderLayout, reserved),
            });
        }
        Ok(Self {
            version,
            size,
            processors: layout.processors.get(),
        })
    }

    /// Decodes the header and checks that `bytes` is the whole reply.
    ///
    /// # Errors
    /// As [`ReplyHeader::decode`], and [`DecodeError::SizeMismatch`].
    pub fn decode_whole(bytes: &[u8]) -> Result<Self, DecodeError> {
        let header = Self::decode(bytes)?;
        if header.size as usize != bytes.len() {
            return Err(DecodeError::SizeMismatch {
                size: header.size,
                length: bytes.len(),
            });
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_with_its_exact_layout() {
        let mut bytes = [0xffu8; ReplyHeader::SIZE];
        ReplyHeader::new(0x40, 3).encode(&mut bytes);
        assert_eq!(bytes, [1, 0, 0, 0, 0x40, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ReplyHeader::decode(&bytes), Ok(ReplyHeader::new(0x40, 3)));
    }

    #[test]
    fn short_foreign_or_malformed_headers_are_refused() {
        let mut bytes = [0u8; ReplyHeader::SIZE];
        ReplyHeader::new(16, 1).encode(&mut bytes);
        for length in 0..ReplyHeader::SIZE {
            assert_eq!(
                ReplyHeader::decode(&bytes[..length]),
                Err(DecodeError::TooShort { needed: 16, length })
            );
        }
        let mut foreign = bytes;
        foreign[0] = 9;
        assert_eq!(
            ReplyHeader::decode(&foreign),
            Err(DecodeError::VersionMismatch { found: 9 })
        );
        let mut tiny = bytes;
        tiny[4] = 15;
        assert_eq!(
            ReplyHeader::decode(&tiny),
            Err(DecodeError::Malformed { offset: 4 })
        );
        let mut reserved = bytes;
        reserved[15] = 1;
        assert_eq!(
            ReplyHeader::decode(&reserved),
            Err(DecodeError::Malformed { offset: 12 })
        );
    }

    #[test]
    fn decode_whole_wants_exactly_the_named_size() {
        let mut bytes = [0u8; 20];
        ReplyHeader::new(20, 1).encode(&mut bytes);
        assert!(ReplyHeader::decode_whole(&bytes).is_ok());
        assert_eq!(
            ReplyHeader::decode_whole(&bytes[..16]),
            Err(DecodeError::SizeMismatch {
                size: 20,
                length: 16
            })
        );
    }
}
