//! The reply to ENTER and LEAVE: the header, then 48 bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 16 | 4 | 0 success, 1 failure |
//! | 20 | 4 | the processor that failed, `0xFFFF_FFFF` on success |
//! | 24 | 4 | processors this call entered (ENTER) or left (LEAVE), and that stayed so |
//! | 28 | 4 | processors in VMX operation after the call |
//! | 32 | 32 | the error, a [`WireError`] ([`WireError::NONE`] on success) |
//!
//! A failed ENTER or LEAVE is still a completed request: the IOCTL returns
//! `STATUS_SUCCESS` with this reply, because the I/O manager copies no
//! output back for an error status and the caller would lose the reason.

use core::mem::offset_of;

use vmx_core::ProcessorError;
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

use crate::error_code::WireError;
use crate::layout::{ErrorLayout, HeaderLayout, OutcomeLayout};
use crate::reply::{DecodeError, ReplyHeader};
use crate::wire::to_u32;

/// What ENTER or LEAVE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// Processors entered (ENTER) or left (LEAVE) by this call.
    pub changed: u32,
    /// Processors in VMX operation after the call.
    pub entered_after: u32,
    /// The processor that failed and why, if one did.
    pub failure: Option<(u32, WireError)>,
}

const NO_PROCESSOR: u32 = u32::MAX;

impl Outcome {
    /// The size of the whole reply, header included.
    pub const REPLY_SIZE: usize = core::mem::size_of::<OutcomeLayout>();

    /// The outcome of a failure on a processor.
    #[must_use]
    pub fn failed(error: &ProcessorError, changed: usize, entered_after: usize) -> Self {
        Self {
            changed: to_u32(changed),
            entered_after: to_u32(entered_after),
            failure: Some((to_u32(error.processor), WireError::from_error(&error.error))),
        }
    }

    /// Writes the whole reply into `bytes[..REPLY_SIZE]`; nothing when
    /// shorter.
    pub fn encode_reply(&self, processors: u32, bytes: &mut [u8]) {
        let (result, processor, error) = match self.failure {
            None => (0, NO_PROCESSOR, WireError::NONE),
            Some((processor, error)) => (1, processor, error),
        };
        let layout = OutcomeLayout {
            header: ReplyHeader::new(to_u32(Self::REPLY_SIZE), processors).layout(),
            result: U32::new(result),
            processor: U32::new(processor),
            changed: U32::new(self.changed),
            entered_after: U32::new(self.entered_after),
            error: error.layout(),
        };
        // A shorter `bytes` is left untouched, as documented.
        let _ = layout.write_to_prefix(bytes);
    }

    /// Decodes a whole reply.
    ///
    /// # Errors
    /// A header error, a size other than [`Outcome::REPLY_SIZE`], or a
    /// field out of range ([`DecodeError::Malformed`]).
    pub fn decode_reply(bytes: &[u8]) -> Result<(ReplyHeader, Self), DecodeError> {
        let header = ReplyHeader::decode_whole(bytes)?;
        let malformed = |offset| DecodeError::Malformed { offset };
        let layout = OutcomeLayout::read_from_bytes(bytes).map_err(|_| {
            malformed(offset_of!(OutcomeLayout, header) + offset_of!(HeaderLayout, size))
        })?;
        let error_at = offset_of!(OutcomeLayout, error);
        let processor = layout.processor.get();
        let error = WireError::from_layout(&layout.error)
            .ok_or(malformed(error_at + offset_of!(ErrorLayout, reserved)))?;
        let failure = match layout.result.get() {
            0 if processor == NO_PROCESSOR && error == WireError::NONE => None,
            0 => return Err(malformed(offset_of!(OutcomeLayout, processor))),
            1 if error.code != crate::error_code::NONE => Some((processor, error)),
            1 => return Err(malformed(error_at)),
            _ => return Err(malformed(offset_of!(OutcomeLayout, result))),
        };
        Ok((
            header,
            Self {
                changed: layout.changed.get(),
                entered_after: layout.entered_after.get(),
                failure,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmx_core::Error;

    #[test]
    fn the_reply_is_64_bytes() {
        assert_eq!(Outcome::REPLY_SIZE, 64);
    }

    #[test]
    fn success_and_failure_round_trip() {
        let success = Outcome {
            changed: 4,
            entered_after: 4,
            failure: None,
        };
        let failure = Outcome::failed(
            &ProcessorError {
                processor: 2,
                error: Error::InUse { cr4: 0x2020 },
            },
            0,
            0,
        );
        for outcome in [success, failure] {
            let mut bytes = [0xccu8; Outcome::REPLY_SIZE];
            outcome.encode_reply(4, &mut bytes);
            let (header, decoded) = Outcome::decode_reply(&bytes).unwrap();
            assert_eq!(header, ReplyHeader::new(64, 4));
            assert_eq!(decoded, outcome);
        }
        let mut bytes = [0u8; Outcome::REPLY_SIZE];
        success.encode_reply(4, &mut bytes);
        assert_eq!(
            &bytes[16..32],
            &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0, 4, 0, 0, 0]
        );
    }

    #[test]
    fn inconsistent_fields_are_malformed() {
        let mut bytes = [0u8; Outcome::REPLY_SIZE];
        Outcome {
            changed: 1,
            entered_after: 1,
            failure: None,
        }
        .encode_reply(1, &mut bytes);
        let mut bad_result = bytes;
        bad_result[16] = 2;
        assert_eq!(
            Outcome::decode_reply(&bad_result),
            Err(DecodeError::Malformed { offset: 16 })
        );
        let mut failure_without_error = bytes;
        failure_without_error[16] = 1;
        assert_eq!(
            Outcome::decode_reply(&failure_without_error),
            Err(DecodeError::Malformed { offset: 32 })
        );
        let mut success_with_processor = bytes;
        success_with_processor[20] = 0;
        assert_eq!(
            Outcome::decode_reply(&success_with_processor),
            Err(DecodeError::Malformed { offset: 20 })
        );
        assert!(Outcome::decode_reply(&bytes[..63]).is_err());
    }

    #[test]
    fn encode_into_a_short_buffer_writes_nothing() {
        let mut bytes = [0x5au8; Outcome::REPLY_SIZE - 1];
        Outcome {
            changed: 0,
            entered_after: 0,
            failure: None,
        }
        .encode_reply(1, &mut bytes);
        assert!(bytes.iter().all(|b| *b == 0x5a));
    }
}
