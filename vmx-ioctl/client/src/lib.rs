//! # vmx-ioctl-client
//!
//! User mode's side of the [`vmx_ioctl`] protocol: QUERY with the
//! two-call pattern, ENTER, LEAVE and STATUS, every reply decoded and
//! checked, and every failure turned into a message that says what to do.
//!
//! The driver is reached through a [`Transport`] (`DeviceIoControl`'s
//! contract): `windows::DeviceHandle` on Windows, the simulated driver
//! in the tests. All `unsafe` (the Win32 calls) is in the `windows` module (Windows only), so
//! that the checker (`user-app`) stays free of it.
#![deny(missing_docs)]

#[cfg(windows)]
pub mod windows;

use vmx_core::ProcessorStatus;
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{DecodeError, Ioctl, Outcome, QueryReader, ReplyHeader, Request, USER_PATH};

/// `ERROR_FILE_NOT_FOUND`: no device by that name: the driver is not loaded.
pub const ERROR_FILE_NOT_FOUND: u32 = 2;
/// `ERROR_PATH_NOT_FOUND`.
pub const ERROR_PATH_NOT_FOUND: u32 = 3;
/// `ERROR_ACCESS_DENIED`: the device admits SYSTEM and Administrators only.
pub const ERROR_ACCESS_DENIED: u32 = 5;
/// `ERROR_INVALID_FUNCTION` (`STATUS_INVALID_DEVICE_REQUEST`).
pub const ERROR_INVALID_FUNCTION: u32 = 1;
/// `ERROR_BAD_LENGTH` (`STATUS_INFO_LENGTH_MISMATCH`).
pub const ERROR_BAD_LENGTH: u32 = 24;
/// `ERROR_INSUFFICIENT_BUFFER` (`STATUS_BUFFER_TOO_SMALL`).
pub const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
/// `ERROR_BUSY` (`STATUS_DEVICE_BUSY`).
pub const ERROR_BUSY: u32 = 170;
/// `ERROR_MORE_DATA` (`STATUS_BUFFER_OVERFLOW`): the reply header came back
/// alone.
pub const ERROR_MORE_DATA: u32 = 234;
/// `ERROR_REVISION_MISMATCH` (`STATUS_REVISION_MISMATCH`).
pub const ERROR_REVISION_MISMATCH: u32 = 1306;

/// A failed `DeviceIoControl` (or `CreateFileW`): the Win32 error and the
/// bytes returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportError {
    /// `GetLastError()`.
    pub win32: u32,
    /// `*lpBytesReturned`.
    pub returned: usize,
}

/// `DeviceIoControl` on the driver's device.
pub trait Transport {
    /// Sends `code` with `input`; the reply lands in `output`.
    ///
    /// # Errors
    /// The Win32 error and the bytes returned when the call fails (for
    /// `ERROR_MORE_DATA` the reply header is in `output`).
    fn ioctl(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, TransportError>;
}

/// Why talking to the driver failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Opening the device failed.
    Open {
        /// `GetLastError()`.
        win32: u32,
        /// The device was opened earlier in this process.
        opened_before: bool,
        /// Whether this process runs elevated (its token's
        /// `TokenElevation`), when that could be read.
        elevated: Option<bool>,
    },
    /// The driver refused or failed the request.
    Ioctl {
        /// The request.
        ioctl: Ioctl,
        /// `GetLastError()`.
        win32: u32,
    },
    /// The reply does not decode.
    Decode {
        /// The request.
        ioctl: Ioctl,
        /// Why.
        error: DecodeError,
    },
    /// QUERY's size changed on every try.
    Unsettled,
}

/// Why a request got `ERROR_ACCESS_DENIED`, from what is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessDenied {
    /// The process is not elevated: the device's security descriptor
    /// admits only SYSTEM and Administrators.
    NotElevated,
    /// Elevation could not be read: most likely not elevated.
    ElevationUnknown,
    /// The handle opened fine (in this request, or earlier in this process)
    /// and now the driver refuses. nt-driver never completes a request
    /// with `STATUS_ACCESS_DENIED`, and the device's security descriptor
    /// does not change while it is loaded: the driver, or the process that
    /// hosts it (under Wine, `winedevice.exe`: a crashed driver host makes
    /// every later request fail with `ERROR_ACCESS_DENIED`), has stopped
    /// responding.
    DriverStopped,
    /// The process is elevated and still refused: not a question of rights
    /// (the descriptor was overridden for the device's class, or security
    /// software blocks the device).
    ElevatedButRefused,
}

impl AccessDenied {
    /// The cause of an `ERROR_ACCESS_DENIED`: on an open handle
    /// (`handle_opened`), on the device opened earlier in this process
    /// (`opened_before`), or at the first open, with the process's
    /// elevation when known.
    #[must_use]
    pub const fn cause(handle_opened: bool, opened_before: bool, elevated: Option<bool>) -> Self {
        if handle_opened || opened_before {
            return Self::DriverStopped;
        }
        match elevated {
            Some(false) => Self::NotElevated,
            None => Self::ElevationUnknown,
            Some(true) => Self::ElevatedButRefused,
        }
    }

    /// The sentence for the user: what is wrong and what to do.
    #[must_use]
    pub const fn text(self) -> &'static str {
        match self {
            Self::NotElevated => {
                "access denied: run as Administrator (the device admits only SYSTEM and \
                 Administrators)"
            }
            Self::ElevationUnknown => {
                "access denied: run as Administrator (the device admits only SYSTEM and \
                 Administrators; this program could not tell whether it runs elevated)"
            }
            Self::DriverStopped => {
                "access denied by a device that opened fine: nt-driver never refuses a request \
                 that way, so the driver or the process hosting it has stopped responding; look \
                 at its last DbgView lines, then restart it (`sc.exe stop nt_driver`, \
                 `sc.exe start nt_driver`)"
            }
            Self::ElevatedButRefused => {
                "access denied although this process runs elevated: not a question of rights; \
                 the device's security descriptor may have been overridden for its class, or \
                 security software blocks the device; look at the driver's DbgView lines"
            }
        }
    }
}

impl ClientError {
    /// Whether the driver is not loaded (the device does not exist).
    #[must_use]
    pub fn driver_not_loaded(&self) -> bool {
        matches!(self, Self::Open { win32, .. } if *win32 == ERROR_FILE_NOT_FOUND || *win32 == ERROR_PATH_NOT_FOUND)
    }
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Open { .. } if self.driver_not_loaded() => write!(
                f,
                "driver not loaded: {USER_PATH} does not exist; install and start nt-driver \
                 (`sc.exe start nt_driver`, see docs/src/windows/deploy.md)"
            ),
            Self::Open {
                win32: ERROR_ACCESS_DENIED,
                opened_before,
                elevated,
            } => f.write_str(AccessDenied::cause(false, *opened_before, *elevated).text()),
            Self::Open { win32, .. } => {
                write!(f, "opening {USER_PATH} failed with Win32 error {win32}")
            }
            Self::Ioctl { ioctl, win32 } => {
                let name = ioctl.name();
                match *win32 {
                    ERROR_ACCESS_DENIED => {
                        let text = AccessDenied::cause(true, true, None).text();
                        write!(f, "{name}: {text}")
                    }
                    ERROR_BUSY => write!(
                        f,
                        "{name}: the driver is busy with another request, or the system is going \
                         to sleep or resuming; try again"
                    ),
                    ERROR_REVISION_MISMATCH | ERROR_INVALID_FUNCTION | ERROR_BAD_LENGTH => write!(
                        f,
                        "{name}: the driver does not speak this program's protocol (Win32 error \
                         {win32}): build the driver and the program from the same source"
                    ),
                    other => write!(f, "{name}: DeviceIoControl failed with Win32 error {other}"),
                }
            }
            Self::Decode { ioctl, error } => write!(f, "{}: {error}", ioctl.name()),
            Self::Unsettled => f.write_str("QUERY: the reply size kept changing; try again"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The driver, over a transport.
#[derive(Debug)]
pub struct Client<T> {
    transport: T,
}

/// How many times QUERY asks again when its reply grew in between.
const QUERY_TRIES: usize = 4;

impl<T: Transport> Client<T> {
    /// A client over `transport`.
    pub fn new(transport: T) -> Self {
        Self { transport }
    }

    fn call(&mut self, ioctl: Ioctl, output: &mut [u8]) -> Result<usize, TransportError> {
        self.transport
            .ioctl(ioctl.code(), &Request::current().to_bytes(), output)
    }

    fn fixed(&mut self, ioctl: Ioctl, size: usize) -> Result<Vec<u8>, ClientError> {
        let mut reply = vec![0; size];
        let length = self
            .call(ioctl, &mut reply)
            .map_err(|e| ClientError::Ioctl {
                ioctl,
                win32: e.win32,
            })?;
        reply.truncate(length);
        Ok(reply)
    }

    /// QUERY: the raw values of every processor, checked; decode them with
    /// [`QueryReader::decode`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn query(&mut self) -> Result<Vec<u8>, ClientError> {
        let ioctl = Ioctl::Query;
        let mut size = ReplyHeader::SIZE;
        for _ in 0..QUERY_TRIES {
            let mut reply = vec![0; size];
            match self.call(ioctl, &mut reply) {
                Ok(length) => {
                    reply.truncate(length);
                    QueryReader::decode(&reply)
                        .map_err(|error| ClientError::Decode { ioctl, error })?;
                    return Ok(reply);
                }
                Err(TransportError {
                    win32: ERROR_MORE_DATA,
                    returned,
                }) => {
                    let header = ReplyHeader::decode(&reply[..returned.min(reply.len())])
                        .map_err(|error| ClientError::Decode { ioctl, error })?;
                    size = header.size as usize;
                }
                Err(e) => {
                    return Err(ClientError::Ioctl {
                        ioctl,
                        win32: e.win32,
                    });
                }
            }
        }
        Err(ClientError::Unsettled)
    }

    /// ENTER: VMX operation on every processor, or on none.
    ///
    /// # Errors
    /// [`ClientError`]; a refusal by vmx-core is not an error here but the
    /// [`Outcome`]'s failure.
    pub fn enter(&mut self) -> Result<Outcome, ClientError> {
        self.outcome(Ioctl::Enter)
    }

    /// LEAVE: out of VMX operation wherever the driver entered it.
    ///
    /// # Errors
    /// As [`Client::enter`].
    pub fn leave(&mut self) -> Result<Outcome, ClientError> {
        self.outcome(Ioctl::Leave)
    }

    fn outcome(&mut self, ioctl: Ioctl) -> Result<Outcome, ClientError> {
        let reply = self.fixed(ioctl, Outcome::REPLY_SIZE)?;
        Outcome::decode_reply(&reply)
            .map(|(_, outcome)| outcome)
            .map_err(|error| ClientError::Decode { ioctl, error })
    }

    /// STATUS: each processor's VMX state.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn status(&mut self) -> Result<Vec<ProcessorStatus>, ClientError> {
        let ioctl = Ioctl::Status;
        let decode = |error| ClientError::Decode { ioctl, error };
        // The header first, for the processor count (ERROR_MORE_DATA).
        let mut header = [0u8; ReplyHeader::SIZE];
        let size = match self.call(ioctl, &mut header) {
            Ok(length) => {
                return StatusEntry::decode_reply(&header[..length])
                    .map(|(_, s)| s.collect())
                    .map_err(decode);
            }
            Err(TransportError {
                win32: ERROR_MORE_DATA,
                ..
            }) => ReplyHeader::decode(&header).map_err(decode)?.size as usize,
            Err(e) => {
                return Err(ClientError::Ioctl {
                    ioctl,
                    win32: e.win32,
                });
            }
        };
        let reply = self.fixed(ioctl, size)?;
        StatusEntry::decode_reply(&reply)
            .map(|(_, s)| s.collect())
            .map_err(decode)
    }
}

/// One line per processor for STATUS, e.g.
/// `processor 0: on, VMXON region at 0x1a2b000, revision 0x4`.
#[must_use]
pub fn status_text(statuses: &[ProcessorStatus]) -> String {
    let mut text = String::new();
    for (index, status) in statuses.iter().enumerate() {
        let line = match status {
            ProcessorStatus::Off => format!("processor {index}: off\n"),
            ProcessorStatus::On {
                region,
                revision_id,
                ..
            } => format!(
                "processor {index}: in VMX operation, VMXON region at {region:#x}, revision {revision_id:#x}\n"
            ),
        };
        text.push_str(&line);
    }
    text
}

/// What ENTER or LEAVE did, in a sentence.
#[must_use]
pub fn outcome_text(ioctl: Ioctl, outcome: &Outcome) -> String {
    let verb = if ioctl == Ioctl::Enter {
        "entered"
    } else {
        "left"
    };
    match outcome.failure {
        None => format!(
            "VMX operation {verb} on {} processors; {} in VMX operation now",
            outcome.changed, outcome.entered_after
        ),
        Some((processor, error)) => format!(
            "{} failed on processor {processor}: {error}; {} processors in VMX operation now",
            ioctl.name(),
            outcome.entered_after
        ),
    }
}

#[cfg(test)]
mod tests;
