//! CPUID: unprivileged, so safe to call from any mode.

use vmx_core::CpuidResult;

/// CPUID with EAX = `leaf` and ECX = `subleaf`, on the processor the
/// caller runs on. Works in user mode as in the kernel.
#[must_use]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let r = raw_cpuid::cpuid!(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_0_of_the_host_names_a_printable_vendor() {
        let leaf0 = cpuid(0, 0);
        assert!(leaf0.eax >= 1, "every x86-64 processor has leaf 1");
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
        assert!(
            vendor.iter().all(|b| b.is_ascii() && !b.is_ascii_control()),
            "{vendor:?}"
        );
    }
}
