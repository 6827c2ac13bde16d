//! # vmx-ioctl
//!
//! The protocol between the Windows driver (`nt-driver`) and its user-mode
//! client (`user-app`), defined once: the device names, the four IOCTL
//! codes, and the request and reply layouts as types ([`layout`]:
//! `#[repr(C)]` structures of little-endian fields, read and written with
//! zerocopy's `FromBytes`/`IntoBytes`, without `unsafe`), each with its
//! exact size and a decoder that checks every byte it is given.
//!
//! Why zerocopy: the layouts used to be offset arithmetic (`put_u32(out,
//! 20, …)`), with the offsets written twice, in the code and in the tables
//! of the docs. As types, a field's offset is its place in a structure that
//! the driver, the client and these docs share; zerocopy's derives check
//! at compile time that every bit pattern is valid and that there is no
//! padding, and its little-endian field types fix the byte order and need
//! no alignment. The wire format did not change (`tests/format.rs` pins
//! every byte of it), nor did the decoders' checks or the fuzz target.
//!
//! Every IOCTL is `METHOD_BUFFERED` and takes the same 8-byte [`Request`].
//! Every reply starts with a 16-byte [`ReplyHeader`] that names the size of
//! the whole reply, so a caller whose buffer is too small learns the size
//! it needs (see [`reply`] for the two-call pattern).
//!
//! | IOCTL | function | access | reply after the header |
//! |---|---|---|---|
//! | [`Ioctl::Query`] | 0x800 | read | per processor: the CPUID/MSR/CR observations of a diagnosis ([`query`]) |
//! | [`Ioctl::Enter`] | 0x801 | write | an [`Outcome`] |
//! | [`Ioctl::Leave`] | 0x802 | write | an [`Outcome`] |
//! | [`Ioctl::Status`] | 0x803 | read | per processor: a [`StatusEntry`] |
//!
//! ```
//! use vmx_ioctl::{Ioctl, Request, ctl_code, FILE_DEVICE_UNKNOWN, METHOD_BUFFERED, FILE_ANY_ACCESS};
//!
//! assert_eq!(ctl_code(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS), 0x0022_2000);
//! assert_eq!(Ioctl::from_code(Ioctl::Enter.code()), Some(Ioctl::Enter));
//!
//! let mut bytes = [0u8; Request::SIZE];
//! Request::current().encode(&mut bytes);
//! assert_eq!(Request::decode(&bytes), Ok(Request::current()));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod code;
pub mod error_code;
pub mod layout;
pub mod outcome;
pub mod query;
pub mod reply;
pub mod request;
pub mod status;
mod wire;

pub use code::{
    DEVICE_NAME, DOS_DEVICE_NAME, FILE_ANY_ACCESS, FILE_DEVICE_UNKNOWN, FILE_READ_DATA,
    FILE_WRITE_DATA, Ioctl, METHOD_BUFFERED, USER_PATH, ctl_code,
};
pub use error_code::WireError;
pub use outcome::Outcome;
pub use query::{QueryReader, QueryWriter, Replay};
pub use reply::{DecodeError, ReplyHeader};
pub use request::{Request, RequestError};
pub use status::StatusEntry;

/// The protocol version. A request carries it, a reply echoes it; the
/// driver refuses any other version. Bump it on any change of a layout.
pub const PROTOCOL_VERSION: u32 = 1;
