//! The request every IOCTL takes: 8 bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | protocol version ([`PROTOCOL_VERSION`]) |
//! | 4 | 4 | reserved, must be 0 |

use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

use crate::PROTOCOL_VERSION;
use crate::layout::RequestLayout;

/// An IOCTL request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// The protocol version the caller speaks.
    pub version: u32,
}

/// Why a request was refused. The driver maps each to one NTSTATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestError {
    /// The input is not exactly [`Request::SIZE`] bytes.
    WrongLength {
        /// The length given.
        length: usize,
    },
    /// The caller speaks another protocol version.
    VersionMismatch {
        /// The version the request carries.
        found: u32,
    },
    /// A reserved field is not zero.
    ReservedNotZero,
}

impl core::fmt::Display for RequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::WrongLength { length } => {
                write!(f, "the request is {length} bytes, not {}", Request::SIZE)
            }
            Self::VersionMismatch { found } => write!(
                f,
                "the request speaks protocol version {found}, the driver {PROTOCOL_VERSION}"
            ),
            Self::ReservedNotZero => f.write_str("a reserved field of the request is not zero"),
        }
    }
}

impl Request {
    /// The exact size of a request in bytes.
    pub const SIZE: usize = core::mem::size_of::<RequestLayout>();

    /// A request in this crate's protocol version.
    #[must_use]
    pub const fn current() -> Self {
        Self {
            version: PROTOCOL_VERSION,
        }
    }

    /// Writes the request into `bytes[..SIZE]`; nothing when `bytes` is
    /// shorter.
    pub fn encode(&self, bytes: &mut [u8]) {
        let layout = RequestLayout {
            version: U32::new(self.version),
            reserved: U32::ZERO,
        };
        // A shorter `bytes` is left untouched, as documented.
        let _ = layout.write_to_prefix(bytes);
    }

    /// The request as bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        self.encode(&mut bytes);
        bytes
    }

    /// Decodes and checks a request: exact length, current version,
    /// reserved zero.
    ///
    /// # Errors
    /// The first check that fails, in that order.
    pub fn decode(bytes: &[u8]) -> Result<Self, RequestError> {
        let layout =
            RequestLayout::read_from_bytes(bytes).map_err(|_| RequestError::WrongLength {
                length: bytes.len(),
            })?;
        let version = layout.version.get();
        if version != PROTOCOL_VERSION {
            return Err(RequestError::VersionMismatch { found: version });
        }
        if layout.reserved != 0 {
            return Err(RequestError::ReservedNotZero);
        }
        Ok(Self { version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_is_little_endian_version_then_zero() {
        assert_eq!(Request::current().to_bytes(), [1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_length_but_eight_is_refused() {
        let bytes = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for length in 0..=bytes.len() {
            let decoded = Request::decode(&bytes[..length]);
            if length == Request::SIZE {
                assert_eq!(decoded, Ok(Request::current()));
            } else {
                assert_eq!(decoded, Err(RequestError::WrongLength { length }));
            }
        }
    }

    #[test]
    fn another_version_or_a_reserved_bit_is_refused() {
        assert_eq!(
            Request::decode(&[2, 0, 0, 0, 0, 0, 0, 0]),
            Err(RequestError::VersionMismatch { found: 2 })
        );
        assert_eq!(
            Request::decode(&[1, 0, 0, 0, 0, 0, 0, 0x80]),
            Err(RequestError::ReservedNotZero)
        );
    }

    #[test]
    fn encode_into_a_short_buffer_writes_nothing() {
        let mut bytes = [0xaau8; 7];
        Request::current().encode(&mut bytes);
        assert_eq!(bytes, [0xaa; 7]);
    }
}
