//! Messages for the kernel debugger, formatted without allocation.
//!
//! The glue prints a [`Message`] with
//! `DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "%s", message)`:
//! the format string is a constant and the text is only ever an argument,
//! so a `%` in a message is printed, not interpreted. IHVDRIVER at error
//! level passes the default debug-print filter, so DbgView shows the
//! messages without the registry key the tutorial needs.

use core::fmt::{self, Write};

/// Where the driver's messages go.
pub trait Log {
    /// Writes one line.
    fn log(&mut self, args: fmt::Arguments<'_>);
}

/// `DbgPrintEx` transmits at most 512 bytes per call.
pub const MESSAGE_CAPACITY: usize = 512;

const PREFIX: &str = "nt-driver: ";

/// One line, prefixed with `nt-driver: `, ending in `\n` and a NUL,
/// truncated to [`MESSAGE_CAPACITY`] bytes in all. A NUL inside the text
/// (which would cut the C string short) is printed as `?`.
#[derive(Clone)]
pub struct Message {
    bytes: [u8; MESSAGE_CAPACITY],
    length: usize,
}

impl core::fmt::Debug for Message {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Message")
            .field(&core::str::from_utf8(self.text()).unwrap_or("<bytes>"))
            .finish()
    }
}

impl Message {
    /// Room for the text: capacity less the newline and the NUL.
    const TEXT_CAPACITY: usize = MESSAGE_CAPACITY - 2;

    /// Formats a message.
    #[must_use]
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut message = Self {
            bytes: [0; MESSAGE_CAPACITY],
            length: 0,
        };
        // Writing into a Message never fails; a Display impl that fails
        // leaves what it wrote so far.
        let _ = message.write_str(PREFIX);
        let _ = message.write_fmt(args);
        message.bytes[message.length] = b'\n';
        message.bytes[message.length + 1] = 0;
        message
    }

    /// The text with its newline, without the NUL.
    #[must_use]
    pub fn text(&self) -> &[u8] {
        &self.bytes[..=self.length]
    }

    /// The NUL-terminated bytes to pass as `%s`.
    #[must_use]
    pub fn as_c_bytes(&self) -> &[u8] {
        &self.bytes[..self.length + 2]
    }
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            if self.length == Self::TEXT_CAPACITY {
                break;
            }
            self.bytes[self.length] = if byte == 0 { b'?' } else { byte };
            self.length += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_prefixed_and_nul_terminated() {
        let message = Message::new(format_args!("{} processors", 4));
        assert_eq!(message.as_c_bytes(), b"nt-driver: 4 processors\n\0");
    }

    #[test]
    fn percent_signs_and_nuls_are_data() {
        let message = Message::new(format_args!("100% %s%n {}", "a\0b"));
        assert_eq!(message.as_c_bytes(), b"nt-driver: 100% %s%n a?b\n\0");
        assert_eq!(message.as_c_bytes().iter().filter(|b| **b == 0).count(), 1);
    }

    #[test]
    fn long_messages_are_cut_to_the_capacity() {
        let long = "x".repeat(2000);
        let message = Message::new(format_args!("{long}"));
        let bytes = message.as_c_bytes();
        assert_eq!(bytes.len(), MESSAGE_CAPACITY);
        assert_eq!(&bytes[MESSAGE_CAPACITY - 2..], b"\n\0");
    }
}
