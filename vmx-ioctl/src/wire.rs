//! Sizes and counts on the wire.

/// Saturating `usize` to `u32`, for sizes and counts on the wire.
pub(crate) fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
