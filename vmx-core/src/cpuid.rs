//! CPUID: who made the processor, whether it offers VMX, and whether it is a
//! guest of a hypervisor (SDM, "Discovering Support for VMX"; CPUID in the
//! instruction reference).

use crate::cpu::CpuidResult;

/// Leaf 0: highest basic leaf and the vendor string.
pub const LEAF_VENDOR: u32 = 0;
/// Leaf 1: feature information (ECX bit 5 VMX, bit 6 SMX, bit 31 hypervisor).
pub const LEAF_FEATURES: u32 = 1;
/// Leaf 0x4000_0000: hypervisor signature (only meaningful with the
/// hypervisor-present bit set).
pub const LEAF_HYPERVISOR: u32 = 0x4000_0000;
/// Leaf 0x8000_0000: highest extended leaf.
pub const LEAF_EXTENDED_MAX: u32 = 0x8000_0000;
/// Leaf 0x8000_0001: extended features (ECX bit 2 SVM on AMD).
pub const LEAF_EXTENDED_FEATURES: u32 = 0x8000_0001;
/// Leaves 0x8000_0002..=0x8000_0004: the processor brand string.
pub const LEAF_BRAND_FIRST: u32 = 0x8000_0002;
/// Leaf 0x8000_0008: address sizes (EAX bits 7:0 physical-address width).
pub const LEAF_ADDRESS_SIZES: u32 = 0x8000_0008;

const ECX_VMX: u32 = 1 << 5;
const ECX_SMX: u32 = 1 << 6;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EXT_ECX_SVM: u32 = 1 << 2;

/// The physical-address width the SDM prescribes when leaf 0x8000_0008 is
/// absent ("MAXPHYADDR ... 36 if CPUID.80000008H is not supported").
pub const DEFAULT_PHYSICAL_ADDRESS_WIDTH: u8 = 36;

/// Twelve ASCII bytes: a vendor or hypervisor signature.
pub type Signature = [u8; 12];

fn signature(a: u32, b: u32, c: u32) -> Signature {
    let mut out = [0; 12];
    out[..4].copy_from_slice(&a.to_le_bytes());
    out[4..8].copy_from_slice(&b.to_le_bytes());
    out[8..].copy_from_slice(&c.to_le_bytes());
    out
}

/// The signature as text, with trailing NULs and spaces trimmed and any
/// byte that is not printable ASCII shown as `?`.
pub fn signature_text(signature: &Signature) -> SignatureText {
    let end = signature
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    let mut text = [0; 12];
    for (out, &b) in text.iter_mut().zip(&signature[..end]) {
        *out = if b.is_ascii_graphic() || b == b' ' {
            b
        } else {
            b'?'
        };
    }
    SignatureText {
        bytes: text,
        len: end,
    }
}

/// A signature trimmed for display, see [`signature_text`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureText {
    bytes: [u8; 12],
    len: usize,
}

impl SignatureText {
    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Every byte is printable ASCII by construction.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl core::fmt::Debug for SignatureText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for SignatureText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The processor's vendor, from leaf 0 (EBX, EDX, ECX in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// `GenuineIntel`: VT-x.
    Intel,
    /// `AuthenticAMD`: AMD-V (SVM), not VT-x.
    Amd,
    /// `HygonGenuine`: AMD-V (SVM), not VT-x.
    Hygon,
    /// Any other signature, kept as read.
    Other(Signature),
}

impl Vendor {
    /// Decodes leaf 0.
    #[must_use]
    pub fn from_leaf0(leaf0: CpuidResult) -> Self {
        let raw = signature(leaf0.ebx, leaf0.edx, leaf0.ecx);
        match &raw {
            b"GenuineIntel" => Self::Intel,
            b"AuthenticAMD" => Self::Amd,
            b"HygonGenuine" => Self::Hygon,
            _ => Self::Other(raw),
        }
    }

    /// The 12-byte signature.
    #[must_use]
    pub fn signature(&self) -> Signature {
        match self {
            Self::Intel => *b"GenuineIntel",
            Self::Amd => *b"AuthenticAMD",
            Self::Hygon => *b"HygonGenuine",
            Self::Other(raw) => *raw,
        }
    }

    /// Whether this vendor's virtualization is AMD-V (SVM).
    #[must_use]
    pub fn is_amd_v(&self) -> bool {
        matches!(self, Self::Amd | Self::Hygon)
    }
}

impl core::fmt::Display for Vendor {
    /// The signature, e.g. `GenuineIntel`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(signature_text(&self.signature()).as_str())
    }
}

impl core::fmt::Display for Hypervisor {
    /// The name and signature, e.g. `Linux KVM ("KVMKVMKVM")`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} (\"{}\")",
            self.name(),
            signature_text(&self.signature())
        )
    }
}

/// A hypervisor, from the signature in leaf 0x4000_0000 (EBX, ECX, EDX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hypervisor {
    /// `Microsoft Hv`: Hyper-V, which also runs under VBS, HVCI and WSL2.
    HyperV,
    /// `KVMKVMKVM\0\0\0`: Linux KVM.
    Kvm,
    /// `VMwareVMware`.
    VMware,
    /// `XenVMMXenVMM`.
    Xen,
    /// `VBoxVBoxVBox`: VirtualBox.
    VirtualBox,
    /// `TCGTCGTCGTCG`: QEMU's software emulator.
    QemuTcg,
    /// `bhyve bhyve `.
    Bhyve,
    /// `ACRNACRNACRN`.
    Acrn,
    /// `Apple VZ`-style and every other signature, kept as read.
    Other(Signature),
}

impl Hypervisor {
    /// Decodes leaf 0x4000_0000.
    #[must_use]
    pub fn from_leaf(leaf: CpuidResult) -> Self {
        let raw = signature(leaf.ebx, leaf.ecx, leaf.edx);
        match &raw {
            b"Microsoft Hv" => Self::HyperV,
            b"KVMKVMKVM\0\0\0" => Self::Kvm,
            b"VMwareVMware" => Self::VMware,
            b"XenVMMXenVMM" => Self::Xen,
            b"VBoxVBoxVBox" => Self::VirtualBox,
            b"TCGTCGTCGTCG" => Self::QemuTcg,
            b"bhyve bhyve " => Self::Bhyve,
            b"ACRNACRNACRN" => Self::Acrn,
            _ => Self::Other(raw),
        }
    }

    /// The 12-byte signature.
    #[must_use]
    pub fn signature(&self) -> Signature {
        match self {
            Self::HyperV => *b"Microsoft Hv",
            Self::Kvm => *b"KVMKVMKVM\0\0\0",
            Self::VMware => *b"VMwareVMware",
            Self::Xen => *b"XenVMMXenVMM",
            Self::VirtualBox => *b"VBoxVBoxVBox",
            Self::QemuTcg => *b"TCGTCGTCGTCG",
            Self::Bhyve => *b"bhyve bhyve ",
            Self::Acrn => *b"ACRNACRNACRN",
            Self::Other(raw) => *raw,
        }
    }

    /// A human name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::HyperV => "Microsoft Hyper-V",
            Self::Kvm => "Linux KVM",
            Self::VMware => "VMware",
            Self::Xen => "Xen",
            Self::VirtualBox => "VirtualBox",
            Self::QemuTcg => "QEMU TCG (software emulation)",
            Self::Bhyve => "bhyve",
            Self::Acrn => "ACRN",
            Self::Other(_) => "an unrecognised hypervisor",
        }
    }

    /// How to give this hypervisor's guests VT-x (nested virtualization),
    /// in one line.
    #[must_use]
    pub fn nested_remedy(&self) -> &'static str {
        match self {
            Self::HyperV => {
                "Windows runs on Hyper-V (Hyper-V, VBS/HVCI memory integrity, WSL2 or Windows \
                 Sandbox turn it on): in a Hyper-V VM run `Set-VMProcessor -VMName <vm> \
                 -ExposeVirtualizationExtensions $true` on the host; on a Windows host, turn off \
                 Hyper-V, memory integrity and WSL2 (`bcdedit /set hypervisorlaunchtype off`), \
                 then reboot"
            }
            Self::Kvm => {
                "on the KVM host, load kvm_intel with nested=1 (`modprobe kvm_intel nested=1`) \
                 and give the guest the vmx flag (`-cpu host`, or libvirt `host-passthrough`)"
            }
            Self::VMware => {
                "power the VM off and enable \"Virtualize Intel VT-x/EPT or AMD-V/RVI\" in its \
                 processor settings (vhv.enable = \"TRUE\" in the .vmx file)"
            }
            Self::Xen => "give the guest nested virtualization: nestedhvm=1 in its xl config",
            Self::VirtualBox => {
                "enable nested VT-x: `VBoxManage modifyvm <vm> --nested-hw-virt on` (VM powered \
                 off)"
            }
            Self::QemuTcg => {
                "QEMU's TCG emulator offers no VT-x: run under KVM (-enable-kvm -cpu host, with \
                 nested=1 on the host) or use Bochs, which emulates VT-x"
            }
            Self::Bhyve | Self::Acrn | Self::Other(_) => {
                "ask the hypervisor to expose VT-x (nested virtualization) to this guest, or run \
                 on bare metal"
            }
        }
    }
}

/// Leaf 1 ECX, the bits that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureInfo {
    ecx: u32,
}

impl FeatureInfo {
    /// Decodes leaf 1.
    #[must_use]
    pub const fn from_leaf1(leaf1: CpuidResult) -> Self {
        Self { ecx: leaf1.ecx }
    }

    /// ECX bit 5: VMX, as this (possibly virtual) processor reports it.
    #[must_use]
    pub const fn vmx(self) -> bool {
        self.ecx & ECX_VMX != 0
    }

    /// ECX bit 6: Safer Mode Extensions (TXT).
    #[must_use]
    pub const fn smx(self) -> bool {
        self.ecx & ECX_SMX != 0
    }

    /// ECX bit 31: a hypervisor runs this processor as its guest.
    #[must_use]
    pub const fn hypervisor_present(self) -> bool {
        self.ecx & ECX_HYPERVISOR != 0
    }
}

/// What CPUID says about VMX support, read with the leaves that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuIdentity {
    /// The vendor.
    pub vendor: Vendor,
    /// Leaf 1, or `None` when the processor's highest leaf is 0.
    pub features: Option<FeatureInfo>,
    /// The hypervisor, when leaf 1 says one is present.
    pub hypervisor: Option<Hypervisor>,
    /// Leaf 0x8000_0001 ECX bit 2 on AMD and Hygon; `false` elsewhere.
    pub svm: bool,
    /// Leaf 0x8000_0008 EAX bits 7:0, or [`DEFAULT_PHYSICAL_ADDRESS_WIDTH`].
    pub physical_address_width: u8,
}

impl CpuIdentity {
    /// Reads the leaves in order, each only when the processor reports it:
    /// 0, 1, 0x4000_0000 (hypervisor bit set), 0x8000_0000, 0x8000_0001
    /// (AMD and Hygon), 0x8000_0008. `cpuid` returns `None` for a leaf it
    /// cannot answer (a replay that did not capture it); the leaves that
    /// depend on it are then taken as absent. Returns `None` without leaf 0.
    pub fn read(mut cpuid: impl FnMut(u32, u32) -> Option<CpuidResult>) -> Option<Self> {
        let leaf0 = cpuid(LEAF_VENDOR, 0)?;
        let vendor = Vendor::from_leaf0(leaf0);
        let features = if leaf0.eax >= LEAF_FEATURES {
            cpuid(LEAF_FEATURES, 0).map(FeatureInfo::from_leaf1)
        } else {
            None
        };
        let hypervisor = features
            .filter(|f| f.hypervisor_present())
            .and_then(|_| cpuid(LEAF_HYPERVISOR, 0))
            .map(Hypervisor::from_leaf);
        let extended_max = cpuid(LEAF_EXTENDED_MAX, 0).map_or(0, |r| r.eax);
        let svm = vendor.is_amd_v()
            && extended_max >= LEAF_EXTENDED_FEATURES
            && cpuid(LEAF_EXTENDED_FEATURES, 0).is_some_and(|r| r.ecx & EXT_ECX_SVM != 0);
        let physical_address_width = if extended_max >= LEAF_ADDRESS_SIZES {
            cpuid(LEAF_ADDRESS_SIZES, 0)
                .map(|r| (r.eax & 0xff) as u8)
                .filter(|&w| w != 0)
        } else {
            None
        }
        .unwrap_or(DEFAULT_PHYSICAL_ADDRESS_WIDTH);
        Some(Self {
            vendor,
            features,
            hypervisor,
            svm,
            physical_address_width,
        })
    }

    /// Leaf 1 ECX bit 5.
    #[must_use]
    pub fn vmx(&self) -> bool {
        self.features.is_some_and(FeatureInfo::vmx)
    }

    /// Whether CPUID leaves VMX possible: leaf 1 ECX bit 5 set on a vendor
    /// whose bit 5 is VMX (every vendor but the AMD-V ones, AMD and Hygon).
    /// Only then do IA32_FEATURE_CONTROL and the VMX capability MSRs exist.
    #[must_use]
    pub fn reports_vmx(&self) -> bool {
        !self.vendor.is_amd_v() && self.vmx()
    }

    /// Leaf 1 ECX bit 6.
    #[must_use]
    pub fn smx(&self) -> bool {
        self.features.is_some_and(FeatureInfo::smx)
    }
}

/// The 48-byte brand string from leaves 0x8000_0002..=0x8000_0004, when the
/// processor has them, trimmed of NULs and surrounding spaces.
pub fn brand_string(mut cpuid: impl FnMut(u32, u32) -> Option<CpuidResult>) -> Option<BrandString> {
    let extended_max = cpuid(LEAF_EXTENDED_MAX, 0)?.eax;
    if extended_max < LEAF_BRAND_FIRST + 2 {
        return None;
    }
    let mut bytes = [0u8; 48];
    for (i, chunk) in bytes.chunks_exact_mut(16).enumerate() {
        let r = cpuid(LEAF_BRAND_FIRST + i as u32, 0)?;
        for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
            chunk[j * 4..j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
        }
    }
    for b in &mut bytes {
        if !(b.is_ascii_graphic() || *b == b' ') {
            *b = b' ';
        }
    }
    let start = bytes.iter().position(|&b| b != b' ')?;
    let end = bytes.iter().rposition(|&b| b != b' ')? + 1;
    Some(BrandString { bytes, start, end })
}

/// A processor brand string, see [`brand_string`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BrandString {
    bytes: [u8; 48],
    start: usize,
    end: usize,
}

impl BrandString {
    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Every byte is printable ASCII by construction.
        core::str::from_utf8(&self.bytes[self.start..self.end]).unwrap_or("")
    }
}

impl core::fmt::Debug for BrandString {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidResult {
        CpuidResult { eax, ebx, ecx, edx }
    }

    /// Leaf 0 answering `max` and `vendor` (EBX, EDX, ECX order).
    pub(crate) fn leaf0(max: u32, vendor: &[u8; 12]) -> CpuidResult {
        let word = |i: usize| u32::from_le_bytes(vendor[i..i + 4].try_into().unwrap());
        regs(max, word(0), word(8), word(4))
    }

    #[test]
    fn vendor_reads_ebx_edx_ecx_in_that_order() {
        assert_eq!(
            Vendor::from_leaf0(leaf0(0xd, b"GenuineIntel")),
            Vendor::Intel
        );
        assert_eq!(Vendor::from_leaf0(leaf0(0xd, b"AuthenticAMD")), Vendor::Amd);
        assert_eq!(
            Vendor::from_leaf0(leaf0(0xd, b"HygonGenuine")),
            Vendor::Hygon
        );
        // Swapping EDX and ECX must not still read as Intel.
        let swapped = regs(0xd, 0x756e_6547, 0x4965_6e69, 0x6c65_746e);
        assert_ne!(Vendor::from_leaf0(swapped), Vendor::Intel);
        assert_eq!(Vendor::from_leaf0(swapped).signature(), *b"GenuntelineI");
        assert_eq!(std::format!("{}", Vendor::Amd), "AuthenticAMD");
        assert_eq!(
            std::format!("{}", Hypervisor::Kvm),
            "Linux KVM (\"KVMKVMKVM\")"
        );
    }

    #[test]
    fn hypervisor_signature_is_ebx_ecx_edx() {
        // KVM's leaf 0x4000_0000 as this machine reports it.
        let kvm = regs(0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x0000_004d);
        assert_eq!(Hypervisor::from_leaf(kvm), Hypervisor::Kvm);
        assert_eq!(
            signature_text(&Hypervisor::Kvm.signature()).as_str(),
            "KVMKVMKVM"
        );
        let unknown = Hypervisor::from_leaf(regs(0, 0x6c6c_6548, 0x0000_006f, 0));
        assert_eq!(signature_text(&unknown.signature()).as_str(), "Hello");
    }

    #[test]
    fn feature_bits_are_ecx_5_6_31() {
        // Leaf 1 ECX of the Bochs corei7_skylake_x model: VMX set, no hypervisor.
        let f = FeatureInfo::from_leaf1(regs(0x50654, 0, 0x77fa_f3bf, 0xbfeb_fbff));
        assert!(f.vmx());
        assert!(!f.hypervisor_present());
        let f = FeatureInfo::from_leaf1(regs(0, 0, (1 << 31) | (1 << 6), 0));
        assert!(!f.vmx() && f.smx() && f.hypervisor_present());
    }

    #[test]
    fn identity_reads_only_the_leaves_that_exist() {
        let mut asked = std::vec::Vec::new();
        let identity = CpuIdentity::read(|leaf, sub| {
            asked.push(leaf);
            Some(match leaf {
                0 => leaf0(0xd, b"GenuineIntel"),
                1 => regs(0, 0, 1 << 5, 0),
                0x8000_0000 => regs(0x8000_0004, 0, 0, 0),
                _ => panic!("leaf {leaf:#x}/{sub} should not be read"),
            })
        })
        .unwrap();
        assert_eq!(asked, [0, 1, 0x8000_0000]);
        assert!(identity.vmx());
        assert_eq!(identity.hypervisor, None);
        assert_eq!(
            identity.physical_address_width,
            DEFAULT_PHYSICAL_ADDRESS_WIDTH
        );
    }

    #[test]
    fn svm_and_address_width_are_read_on_amd() {
        let identity = CpuIdentity::read(|leaf, _| {
            Some(match leaf {
                0 => leaf0(0x10, b"AuthenticAMD"),
                1 => regs(0, 0, 0, 0),
                0x8000_0000 => regs(0x8000_0008, 0, 0, 0),
                0x8000_0001 => regs(0, 0, 1 << 2, 0),
                0x8000_0008 => regs(0x3030, 0, 0, 0),
                _ => unreachable!(),
            })
        })
        .unwrap();
        assert!(identity.svm && identity.vendor.is_amd_v() && !identity.vmx());
        assert_eq!(identity.physical_address_width, 0x30);
    }

    #[test]
    fn brand_string_is_trimmed() {
        let text = b"  Intel(R) Core(TM) i7-6700K CPU @ 4.00GHz\0\0\0\0\0\0";
        let brand = brand_string(|leaf, _| {
            if leaf == 0x8000_0000 {
                return Some(regs(0x8000_0008, 0, 0, 0));
            }
            let i = (leaf - 0x8000_0002) as usize * 16;
            let w = |k: usize| u32::from_le_bytes(text[i + k..i + k + 4].try_into().unwrap());
            Some(regs(w(0), w(4), w(8), w(12)))
        })
        .unwrap();
        assert_eq!(brand.as_str(), "Intel(R) Core(TM) i7-6700K CPU @ 4.00GHz");
    }
}
