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

use vmx_core::ProcessorError;

use crate::error_code::WireError;
use crate::reply::{DecodeError, ReplyHeader};
use crate::wire::{get_u32, put_u32, to_u32};

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
    pub const REPLY_SIZE: usize = ReplyHeader::SIZE + 16 + WireError::SIZE;

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
        let Some(out) = bytes.get_mut(..Self::REPLY_SIZE) else {
            return;
        };
        ReplyHeader::new(to_u32(Self::REPLY_SIZE), processors).encode(out);
        let (result, processor, error) = match self.failure {
            None => (0, NO_PROCESSOR, WireError::NONE),
            Some((processor, error)) => (1, processor, error),
        };
        put_u32(out, 16, result);
        put_u32(out, 20, processor);
        put_u32(out, 24, self.changed);
        put_u32(out, 28, self.entered_after);
        error.encode(&mut out[32..]);
    }

    /// Decodes a whole reply.
    ///
    /// # Errors
    /// A header error, a size other than [`Outcome::REPLY_SIZE`], or a
    /// field out of range ([`DecodeError::Malformed`]).
    pub fn decode_reply(bytes: &[u8]) -> Result<(ReplyHeader, Self), DecodeError> {
        let header = ReplyHeader::decode_whole(bytes)?;
        if bytes.len() != Self::REPLY_SIZE {
            return Err(DecodeError::Malformed { offset: 4 });
        }
        let processor = get_u32(bytes, 20);
        let error = WireError::decode(&bytes[32..]).ok_or(DecodeError::Malformed { offset: 36 })?;
        let failure = match get_u32(bytes, 16) {
            0 if processor == NO_PROCESSOR && error == WireError::NONE => None,
            0 => return Err(DecodeError::Malformed { offset: 20 }),
            1 if error.code != crate::error_code::NONE => Some((processor, error)),
            1 => return Err(DecodeError::Malformed { offset: 32 }),
            _ => return Err(DecodeError::Malformed { offset: 16 }),
        };
        Ok((
            header,
            Self {
                changed: get_u32(bytes, 24),
                entered_after: get_u32(bytes, 28),
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
