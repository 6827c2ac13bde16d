//! Little-endian reads and writes at fixed offsets. Callers check lengths
//! first; these never panic: a short slice reads as zero and is not
//! written, which the callers' length checks make unreachable.

pub(crate) fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut raw = [0u8; 4];
    if let Some(src) = bytes.get(offset..offset + 4) {
        raw.copy_from_slice(src);
    }
    u32::from_le_bytes(raw)
}

pub(crate) fn get_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut raw = [0u8; 8];
    if let Some(src) = bytes.get(offset..offset + 8) {
        raw.copy_from_slice(src);
    }
    u64::from_le_bytes(raw)
}

pub(crate) fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    if let Some(dst) = bytes.get_mut(offset..offset + 4) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

pub(crate) fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
    if let Some(dst) = bytes.get_mut(offset..offset + 8) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

/// Saturating `usize` to `u32`, for sizes and counts on the wire.
pub(crate) fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
