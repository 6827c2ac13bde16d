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
