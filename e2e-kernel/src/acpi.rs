//! Just enough ACPI to list the processors: RSDP → RSDT/XSDT → MADT (ACPI
//! specification, "Root System Description Pointer", "Multiple APIC
//! Description Table").

use core::fmt;

use crate::smp::MAX_PROCESSORS;

/// The size of a system description table header.
const SDT_HEADER_LEN: usize = 36;
/// MADT entry type: processor local APIC.
const MADT_LOCAL_APIC: u8 = 0;
/// Local APIC flags bit 0: enabled.
const LOCAL_APIC_ENABLED: u32 = 1 << 0;
/// Local APIC flags bit 1: online capable (may be enabled by the OS).
const LOCAL_APIC_ONLINE_CAPABLE: u32 = 1 << 1;

/// Why the processors could not be listed.
#[derive(Debug, Clone, Copy)]
pub enum AcpiError {
    /// The RSDP's signature or checksum is wrong.
    BadRsdp,
    /// A table's checksum is wrong.
    BadChecksum([u8; 4]),
    /// The RSDT/XSDT lists no MADT.
    NoMadt,
    /// More usable local APICs than [`MAX_PROCESSORS`].
    TooManyProcessors,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRsdp => write!(f, "ACPI RSDP signature or checksum is wrong"),
            Self::BadChecksum(signature) => write!(
                f,
                "ACPI table {} has a wrong checksum",
                core::str::from_utf8(signature).unwrap_or("????")
            ),
            Self::NoMadt => write!(f, "no ACPI MADT (\"APIC\") table"),
            Self::TooManyProcessors => {
                write!(f, "more than {MAX_PROCESSORS} processors")
            }
        }
    }
}

/// What the MADT says about the processors.
#[derive(Debug, Clone, Copy)]
pub struct Madt {
    /// The physical address of each processor's local APIC registers.
    pub local_apic_address: u32,
    apic_ids: [u8; MAX_PROCESSORS],
    count: usize,
}

impl Madt {
    /// The local APIC IDs of the usable processors, in MADT order.
    pub fn apic_ids(&self) -> &[u8] {
        &self.apic_ids[..self.count]
    }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte)) == 0
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    bytes
        .get(offset..offset + 4)
        .and_then(|field| field.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    bytes
        .get(offset..offset + 8)
        .and_then(|field| field.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The system description table at physical address `address`, checksum
/// verified.
///
/// # Safety
/// `address` must be the address of an ACPI table (from the RSDP or the
/// RSDT/XSDT), identity mapped.
unsafe fn table_at(address: u64) -> Result<&'static [u8], AcpiError> {
    let start = address as *const u8;
    // SAFETY: the caller's contract: a table header is there.
    let header = unsafe { core::slice::from_raw_parts(start, SDT_HEADER_LEN) };
    let length = u32_at(header, 4) as usize;
    // SAFETY: the header's length field spans the whole table.
    let table = unsafe { core::slice::from_raw_parts(start, length.max(SDT_HEADER_LEN)) };
    let signature = [table[0], table[1], table[2], table[3]];
    if checksum_ok(table) {
        Ok(table)
    } else {
        Err(AcpiError::BadChecksum(signature))
    }
}

/// Finds the MADT from the loader's copy of the RSDP and lists the usable
/// processors.
pub fn read_madt(rsdp: &[u8]) -> Result<Madt, AcpiError> {
    if rsdp.get(..8) != Some(b"RSD PTR ".as_slice()) || !checksum_ok(rsdp.get(..20).unwrap_or(rsdp))
    {
        return Err(AcpiError::BadRsdp);
    }
    let revision = rsdp.get(15).copied().unwrap_or(0);
    let xsdt_address = if revision >= 2 { u64_at(rsdp, 24) } else { 0 };
    // 8-byte entries in the XSDT, 4-byte ones in the RSDT.
    let (root_address, entry_size) = if xsdt_address != 0 {
        (xsdt_address, 8)
    } else {
        (u64::from(u32_at(rsdp, 16)), 4)
    };
    // SAFETY: the RSDP (checksum verified) holds the root table's address.
    let root = unsafe { table_at(root_address) }?;
    for entry in root[SDT_HEADER_LEN..].chunks_exact(entry_size) {
        let address = if entry_size == 8 {
            u64_at(entry, 0)
        } else {
            u64::from(u32_at(entry, 0))
        };
        // SAFETY: every RSDT/XSDT entry is the address of a table.
        let table = unsafe { table_at(address) }?;
        if &table[..4] == b"APIC" {
            return parse_madt(table);
        }
    }
    Err(AcpiError::NoMadt)
}

fn parse_madt(table: &[u8]) -> Result<Madt, AcpiError> {
    let mut madt = Madt {
        local_apic_address: u32_at(table, SDT_HEADER_LEN),
        apic_ids: [0; MAX_PROCESSORS],
        count: 0,
    };
    // Interrupt controller structures follow the local APIC address and flags.
    let mut entries = table.get(SDT_HEADER_LEN + 8..).unwrap_or_default();
    while let [kind, length, ..] = *entries {
        let length = usize::from(length).max(2);
        let entry = entries.get(..length).unwrap_or(entries);
        if kind == MADT_LOCAL_APIC && entry.len() >= 8 {
            let flags = u32_at(entry, 4);
            if flags & (LOCAL_APIC_ENABLED | LOCAL_APIC_ONLINE_CAPABLE) != 0 {
                *madt
                    .apic_ids
                    .get_mut(madt.count)
                    .ok_or(AcpiError::TooManyProcessors)? = entry[3];
                madt.count += 1;
            }
        }
        entries = entries.get(length..).unwrap_or_default();
    }
    Ok(madt)
}
