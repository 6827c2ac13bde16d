//! Validation of an IOCTL before anything runs: code, input, output size.
//!
//! | check, in order | status | bytes returned |
//! |---|---|---|
//! | code is not one of [`Ioctl`] | `STATUS_INVALID_DEVICE_REQUEST` | 0 |
//! | input is not [`Request::SIZE`] bytes | `STATUS_INFO_LENGTH_MISMATCH` | 0 |
//! | no system buffer of `max(input, output)` bytes | `STATUS_INVALID_PARAMETER` | 0 |
//! | request in another protocol version | `STATUS_REVISION_MISMATCH` | 0 |
//! | reserved request field not zero | `STATUS_INVALID_PARAMETER` | 0 |
//! | output shorter than a [`ReplyHeader`] | `STATUS_BUFFER_TOO_SMALL` | 0 |
//! | output shorter than the reply (ENTER, LEAVE, STATUS) | `STATUS_BUFFER_OVERFLOW`, the header alone | 16 |
//!
//! After these checks, [`crate::Control::run`] refuses ENTER and LEAVE with
//! `STATUS_DEVICE_BUSY` while the system changes its power state (see
//! [`crate::power`]); a request that finds another running gets the same
//! status from [`crate::Device::dispatch`].
//!
//! A refused request changes nothing. QUERY's size is known only after
//! the capture, which reads and changes nothing: [`crate::control`] applies
//! the last rule to it afterwards.

use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Ioctl, Outcome, ReplyHeader, Request, RequestError};

use crate::dispatch::Completion;
use crate::ntstatus::{
    STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_REVISION_MISMATCH,
};

/// A request that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Valid {
    /// The IOCTL.
    pub ioctl: Ioctl,
    /// The caller's output length; at least a [`ReplyHeader`], and at
    /// least the whole reply for the fixed-size replies.
    pub output_length: usize,
}

/// The size of the reply to `ioctl` on `processors` processors, when it is
/// known before running: `None` for QUERY.
#[must_use]
pub fn fixed_reply_size(ioctl: Ioctl, processors: usize) -> Option<usize> {
    match ioctl {
        Ioctl::Query => None,
        Ioctl::Enter | Ioctl::Leave => Some(Outcome::REPLY_SIZE),
        // A count too large for the protocol's size field: report the
        // largest size, which no buffer can reach.
        Ioctl::Status => Some(StatusEntry::reply_size(processors).unwrap_or(u32::MAX as usize)),
    }
}

/// The completion for a reply of `needed` bytes that does not fit an
/// output buffer of `output_length` (at least a header): the header alone,
/// naming the size, with `STATUS_BUFFER_OVERFLOW`.
pub fn overflow(buffer: &mut [u8], needed: usize, processors: usize) -> Completion {
    let needed = u32::try_from(needed).unwrap_or(u32::MAX);
    let processors = u32::try_from(processors).unwrap_or(u32::MAX);
    ReplyHeader::new(needed, processors).encode(buffer);
    Completion {
        status: STATUS_BUFFER_OVERFLOW,
        information: ReplyHeader::SIZE,
    }
}

/// Checks an IOCTL request (see the module's table).
///
/// `buffer` is the system buffer ([`crate::dispatch::system_buffer_length`]
/// bytes); it is written only for the `STATUS_BUFFER_OVERFLOW` header.
///
/// # Errors
/// The completion for a refused request.
pub fn validate(
    code: u32,
    input_length: u32,
    output_length: u32,
    buffer: Option<&mut [u8]>,
    processors: usize,
) -> Result<Valid, Completion> {
    let refuse = |status| Err(Completion::status(status));
    let Some(ioctl) = Ioctl::from_code(code) else {
        return refuse(STATUS_INVALID_DEVICE_REQUEST);
    };
    let (input_length, output_length) = (input_length as usize, output_length as usize);
    if input_length != Request::SIZE {
        return refuse(STATUS_INFO_LENGTH_MISMATCH);
    }
    let Some(buffer) = buffer.filter(|b| b.len() >= input_length.max(output_length)) else {
        return refuse(STATUS_INVALID_PARAMETER);
    };
    match Request::decode(&buffer[..input_length]) {
        Ok(_) => {}
        Err(RequestError::VersionMismatch { .. }) => return refuse(STATUS_REVISION_MISMATCH),
        Err(RequestError::ReservedNotZero | RequestError::WrongLength { .. }) => {
            return refuse(STATUS_INVALID_PARAMETER);
        }
    }
    if output_length < ReplyHeader::SIZE {
        return refuse(STATUS_BUFFER_TOO_SMALL);
    }
    if let Some(needed) = fixed_reply_size(ioctl, processors)
        && output_length < needed
    {
        return Err(overflow(buffer, needed, processors));
    }
    Ok(Valid {
        ioctl,
        output_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntstatus::STATUS_BUFFER_OVERFLOW;
    use std::vec;

    fn request() -> [u8; 8] {
        Request::current().to_bytes()
    }

    fn run(
        code: u32,
        input: &[u8],
        output_length: usize,
        processors: usize,
    ) -> (Result<Valid, Completion>, std::vec::Vec<u8>) {
        let mut buffer = vec![0xa5u8; input.len().max(output_length)];
        buffer[..input.len()].copy_from_slice(input);
        let before = buffer.clone();
        let result = validate(
            code,
            input.len() as u32,
            output_length as u32,
            Some(&mut buffer),
            processors,
        );
        if result.is_err() && result.err().map(|c| c.status) != Some(STATUS_BUFFER_OVERFLOW) {
            assert_eq!(buffer, before, "a refusal writes nothing");
        }
        (result, buffer)
    }

    #[test]
    fn unknown_codes_are_invalid_device_requests() {
        for code in [
            0,
            0x0022_2000,
            0x0022_2010,
            0x0022_6001,
            0x0022_6003,
            u32::MAX,
        ] {
            let (result, _) = run(code, &request(), 4096, 2);
            assert_eq!(
                result,
                Err(Completion::status(STATUS_INVALID_DEVICE_REQUEST))
            );
        }
    }

    #[test]
    fn every_ioctl_refuses_every_wrong_input_size() {
        for ioctl in Ioctl::ALL {
            for length in (0..=32).filter(|l| *l != Request::SIZE) {
                let mut input = vec![0u8; length];
                let n = length.min(8);
                input[..n].copy_from_slice(&request()[..n]);
                let (result, _) = run(ioctl.code(), &input, 4096, 2);
                assert_eq!(
                    result,
                    Err(Completion::status(STATUS_INFO_LENGTH_MISMATCH)),
                    "{ioctl:?} input {length}"
                );
            }
        }
    }

    #[test]
    fn a_foreign_version_or_reserved_bits_are_refused() {
        for ioctl in Ioctl::ALL {
            let mut foreign = request();
            foreign[0] = 2;
            assert_eq!(
                run(ioctl.code(), &foreign, 4096, 2).0,
                Err(Completion::status(STATUS_REVISION_MISMATCH))
            );
            let mut reserved = request();
            reserved[4] = 1;
            assert_eq!(
                run(ioctl.code(), &reserved, 4096, 2).0,
                Err(Completion::status(STATUS_INVALID_PARAMETER))
            );
        }
    }

    #[test]
    fn every_ioctl_with_short_and_exact_output_sizes() {
        let processors = 3;
        for ioctl in Ioctl::ALL {
            let needed = fixed_reply_size(ioctl, processors);
            for output in 0..=200 {
                let (result, buffer) = run(ioctl.code(), &request(), output, processors);
                match needed {
                    _ if output < ReplyHeader::SIZE => assert_eq!(
                        result,
                        Err(Completion::status(STATUS_BUFFER_TOO_SMALL)),
                        "{ioctl:?} output {output}"
                    ),
                    Some(needed) if output < needed => {
                        assert_eq!(
                            result,
                            Err(Completion {
                                status: STATUS_BUFFER_OVERFLOW,
                                information: 16
                            })
                        );
                        let header = ReplyHeader::decode(&buffer).unwrap();
                        assert_eq!(header.size as usize, needed);
                        assert_eq!(header.processors, 3);
                    }
                    _ => assert_eq!(
                        result,
                        Ok(Valid {
                            ioctl,
                            output_length: output
                        }),
                        "{ioctl:?} output {output}"
                    ),
                }
            }
        }
        assert_eq!(fixed_reply_size(Ioctl::Status, 3), Some(16 + 3 * 32));
        assert_eq!(fixed_reply_size(Ioctl::Enter, 3), Some(64));
    }

    #[test]
    fn a_missing_or_short_system_buffer_is_an_invalid_parameter() {
        let code = Ioctl::Status.code();
        assert_eq!(
            validate(code, 8, 64, None, 1),
            Err(Completion::status(STATUS_INVALID_PARAMETER))
        );
        let mut short = request().to_vec();
        short.resize(63, 0);
        assert_eq!(
            validate(code, 8, 64, Some(&mut short), 1),
            Err(Completion::status(STATUS_INVALID_PARAMETER))
        );
    }
}
