//! The multiboot2 boot information: the tags this kernel reads (multiboot2
//! specification, "Boot information format").

/// Tag type: end of the tag list.
const TAG_END: u32 = 0;
/// Tag type: boot command line (a NUL-terminated string).
const TAG_COMMAND_LINE: u32 = 1;
/// Tag type: memory map.
const TAG_MEMORY_MAP: u32 = 6;
/// Tag type: copy of the ACPI 1.0 RSDP.
const TAG_ACPI_OLD_RSDP: u32 = 14;
/// Tag type: copy of the ACPI 2.0+ RSDP.
const TAG_ACPI_NEW_RSDP: u32 = 15;
/// Memory map entry type: available RAM.
const MEMORY_AVAILABLE: u32 = 1;

/// The boot information structure the loader left in memory.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo<'a> {
    bytes: &'a [u8],
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset + 4)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset + 8)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

impl BootInfo<'static> {
    /// The boot information at physical address `address`.
    ///
    /// # Safety
    /// `address` must be the one a multiboot2 loader passed in EBX, identity
    /// mapped, and the memory must not be written while the result lives.
    pub unsafe fn from_address(address: usize) -> Self {
        let start = address as *const u8;
        // SAFETY: the caller's contract; the first field is the total size.
        let total_size = unsafe { start.cast::<u32>().read_unaligned() };
        // SAFETY: the loader's structure spans `total_size` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(start, total_size as usize) };
        Self { bytes }
    }
}

impl<'a> BootInfo<'a> {
    /// The tags as (type, payload after the 8-byte tag header).
    fn tags(self) -> impl Iterator<Item = (u32, &'a [u8])> {
        let bytes = self.bytes;
        let mut offset = 8;
        core::iter::from_fn(move || {
            let kind = u32_at(bytes, offset)?;
            let size = u32_at(bytes, offset + 4)? as usize;
            if kind == TAG_END || size < 8 {
                return None;
            }
            let payload = bytes.get(offset + 8..offset + size)?;
            offset += size.next_multiple_of(8);
            Some((kind, payload))
        })
    }

    /// The kernel command line (from `multiboot2 /boot/kernel.elf <line>`).
    pub fn command_line(self) -> Option<&'a str> {
        let (_, payload) = self.tags().find(|&(kind, _)| kind == TAG_COMMAND_LINE)?;
        let text = payload.split(|&byte| byte == 0).next()?;
        core::str::from_utf8(text).ok()
    }

    /// The loader's copy of the ACPI RSDP, the 2.0+ one if there is one.
    pub fn rsdp(self) -> Option<&'a [u8]> {
        let find = |wanted| self.tags().find(|&(kind, _)| kind == wanted);
        find(TAG_ACPI_NEW_RSDP)
            .or_else(|| find(TAG_ACPI_OLD_RSDP))
            .map(|(_, payload)| payload)
    }

    /// Whether the memory map says `start..end` is available RAM.
    pub fn is_available_ram(self, start: u64, end: u64) -> bool {
        let Some((_, map)) = self.tags().find(|&(kind, _)| kind == TAG_MEMORY_MAP) else {
            return false;
        };
        let Some(entry_size) = u32_at(map, 0).map(|size| size as usize) else {
            return false;
        };
        if entry_size < 24 {
            return false;
        }
        map.get(8..)
            .unwrap_or_default()
            .chunks_exact(entry_size)
            .any(|entry| {
                let base = u64_at(entry, 0).unwrap_or(0);
                let length = u64_at(entry, 8).unwrap_or(0);
                u32_at(entry, 16) == Some(MEMORY_AVAILABLE)
                    && base <= start
                    && end <= base.saturating_add(length)
            })
    }
}
