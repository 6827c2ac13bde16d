//! The host-state and guest-state areas of a VMCS as values (SDM, "Host-State
//! Area", "Guest-State Area"), the host's captured from the running
//! processor through the [`Cpu`] trait, and the VMCS description they make
//! up with the controls: every field vmx-core writes, checked by
//! [`entry_checks`](crate::entry_checks) before anything is written.

use crate::controls::{self, Controls};
use crate::cpu::{Cpu, DescriptorTable, SegmentSelectors};
use crate::error::{Error, Instruction, Result};
use crate::fields::{self, Field};
use crate::vmcs::read_field;

/// IA32_SYSENTER_CS.
pub const IA32_SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const IA32_SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const IA32_SYSENTER_EIP: u32 = 0x176;
/// IA32_PAT.
pub const IA32_PAT: u32 = 0x277;
/// IA32_EFER.
pub const IA32_EFER: u32 = 0xc000_0080;
/// IA32_FS_BASE.
pub const IA32_FS_BASE: u32 = 0xc000_0100;
/// IA32_GS_BASE.
pub const IA32_GS_BASE: u32 = 0xc000_0101;

/// The access-rights bit that marks a segment unusable (bit 16; SDM,
/// "Segment Registers" in "Guest-State Area").
pub const AR_UNUSABLE: u32 = 1 << 16;
/// Access rights of a 64-bit ring-0 code segment: type 11 (execute/read,
/// accessed), S, DPL 0, P, L, G.
pub const AR_CODE64: u32 = 0xa09b;
/// Access rights of a flat ring-0 data segment: type 3 (read/write,
/// accessed), S, DPL 0, P, D/B, G.
pub const AR_DATA: u32 = 0xc093;
/// Access rights of a busy 64-bit TSS: type 11, P.
pub const AR_TSS_BUSY: u32 = 0x8b;

/// One segment register as the guest-state area holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Segment {
    /// The selector.
    pub selector: u16,
    /// The base address.
    pub base: u64,
    /// The limit, in bytes.
    pub limit: u32,
    /// The access rights in the VMCS format: bits 3:0 type, 4 S, 6:5 DPL,
    /// 7 P, 12 AVL, 13 L, 14 D/B, 15 G, 16 unusable; 11:8 and 31:17
    /// reserved.
    pub access_rights: u32,
}

impl Segment {
    /// An unusable segment with this selector.
    #[must_use]
    pub const fn unusable(selector: u16) -> Self {
        Self {
            selector,
            base: 0,
            limit: 0,
            access_rights: AR_UNUSABLE,
        }
    }

    /// Whether the unusable bit is clear.
    #[must_use]
    pub const fn usable(&self) -> bool {
        self.access_rights & AR_UNUSABLE == 0
    }

    /// The segment type (bits 3:0).
    #[must_use]
    pub const fn segment_type(&self) -> u32 {
        self.access_rights & 0xf
    }

    /// S, the descriptor type (bit 4): 1 for code or data.
    #[must_use]
    pub const fn s(&self) -> bool {
        self.access_rights & (1 << 4) != 0
    }

    /// DPL (bits 6:5).
    #[must_use]
    pub const fn dpl(&self) -> u32 {
        (self.access_rights >> 5) & 3
    }

    /// P, present (bit 7).
    #[must_use]
    pub const fn present(&self) -> bool {
        self.access_rights & (1 << 7) != 0
    }

    /// L, 64-bit code (bit 13).
    #[must_use]
    pub const fn long(&self) -> bool {
        self.access_rights & (1 << 13) != 0
    }

    /// D/B (bit 14).
    #[must_use]
    pub const fn default_big(&self) -> bool {
        self.access_rights & (1 << 14) != 0
    }

    /// G, granularity (bit 15).
    #[must_use]
    pub const fn granularity(&self) -> bool {
        self.access_rights & (1 << 15) != 0
    }

    /// The selector's RPL (bits 1:0).
    #[must_use]
    pub const fn rpl(&self) -> u32 {
        (self.selector & 3) as u32
    }

    /// The selector's TI (bit 2).
    #[must_use]
    pub const fn ti(&self) -> bool {
        self.selector & 4 != 0
    }
}

/// The host-state area, captured from the running processor. The host RSP
/// and RIP are the backend's: it writes them itself when it executes
/// VMLAUNCH or VMRESUME (its stack and its VM-exit entry point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HostState {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// The selectors of ES, CS, SS, DS, FS, GS and TR.
    pub selectors: SegmentSelectors,
    /// IA32_FS_BASE.
    pub fs_base: u64,
    /// IA32_GS_BASE.
    pub gs_base: u64,
    /// The TSS base from TR's descriptor.
    pub tr_base: u64,
    /// GDTR.
    pub gdtr: DescriptorTable,
    /// IDTR.
    pub idtr: DescriptorTable,
    /// IA32_SYSENTER_CS.
    pub sysenter_cs: u64,
    /// IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_PAT.
    pub pat: u64,
}

impl HostState {
    /// Captures the running processor's state: CR0, CR3, CR4, the
    /// selectors, GDTR, IDTR, TR's base, and the FS/GS base, SYSENTER,
    /// EFER and PAT MSRs.
    ///
    /// # Errors
    /// [`Error::Faulted`] when an RDMSR faults.
    pub fn capture<C: Cpu + ?Sized>(cpu: &mut C) -> Result<Self> {
        let mut msr = |msr| {
            cpu.read_msr(msr).map_err(|fault| Error::Faulted {
                instruction: Instruction::Rdmsr(msr),
                fault,
            })
        };
        let fs_base = msr(IA32_FS_BASE)?;
        let gs_base = msr(IA32_GS_BASE)?;
        let sysenter_cs = msr(IA32_SYSENTER_CS)?;
        let sysenter_esp = msr(IA32_SYSENTER_ESP)?;
        let sysenter_eip = msr(IA32_SYSENTER_EIP)?;
        let efer = msr(IA32_EFER)?;
        let pat = msr(IA32_PAT)?;
        let tables = cpu.read_descriptor_tables();
        Ok(Self {
            cr0: cpu.read_cr0(),
            cr3: cpu.read_cr3(),
            cr4: cpu.read_cr4(),
            selectors: cpu.read_segment_selectors(),
            fs_base,
            gs_base,
            tr_base: cpu.read_tr_base(),
            gdtr: tables.gdtr,
            idtr: tables.idtr,
            sysenter_cs,
            sysenter_esp,
            sysenter_eip,
            efer,
            pat,
        })
    }
}

/// The guest-state area vmx-core writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GuestState {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// DR7.
    pub dr7: u64,
    /// RSP.
    pub rsp: u64,
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// ES.
    pub es: Segment,
    /// CS.
    pub cs: Segment,
    /// SS.
    pub ss: Segment,
    /// DS.
    pub ds: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// LDTR.
    pub ldtr: Segment,
    /// TR.
    pub tr: Segment,
    /// GDTR (its limit is a 32-bit field).
    pub gdtr: (u64, u32),
    /// IDTR (its limit is a 32-bit field).
    pub idtr: (u64, u32),
    /// IA32_DEBUGCTL.
    pub debugctl: u64,
    /// IA32_SYSENTER_CS.
    pub sysenter_cs: u64,
    /// IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// The activity state: 0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI.
    pub activity_state: u32,
    /// The interruptibility state.
    pub interruptibility: u32,
    /// The pending debug exceptions.
    pub pending_debug_exceptions: u64,
    /// The VMCS link pointer: all ones when there is no shadow VMCS.
    pub vmcs_link_pointer: u64,
}

impl GuestState {
    /// A minimal 64-bit guest that runs at `rip` on `rsp` in the host's
    /// address space: the host's CR0, CR3, CR4, GDTR, IDTR and TR, flat
    /// ring-0 segments with the host's CS and SS selectors (a 64-bit code
    /// segment, flat data for SS, DS, ES), FS and GS unusable with a zero
    /// base, no LDT, interrupts off, active, and no shadow VMCS.
    #[must_use]
    pub fn minimal_64bit(host: &HostState, rip: u64, rsp: u64) -> Self {
        let code = Segment {
            selector: host.selectors.cs,
            base: 0,
            limit: 0xffff_ffff,
            access_rights: AR_CODE64,
        };
        let data = |selector| Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            access_rights: AR_DATA,
        };
        Self {
            cr0: host.cr0,
            cr3: host.cr3,
            cr4: host.cr4,
            dr7: 0x400,
            rsp,
            rip,
            rflags: 0x2,
            es: data(host.selectors.ss),
            cs: code,
            ss: data(host.selectors.ss),
            ds: data(host.selectors.ss),
            fs: Segment::unusable(0),
            gs: Segment::unusable(0),
            ldtr: Segment::unusable(0),
            tr: Segment {
                selector: host.selectors.tr,
                base: host.tr_base,
                limit: 0x67,
                access_rights: AR_TSS_BUSY,
            },
            gdtr: (host.gdtr.base, u32::from(host.gdtr.limit)),
            idtr: (host.idtr.base, u32::from(host.idtr.limit)),
            debugctl: 0,
            sysenter_cs: host.sysenter_cs,
            sysenter_esp: host.sysenter_esp,
            sysenter_eip: host.sysenter_eip,
            pat: host.pat,
            efer: host.efer,
            activity_state: 0,
            interruptibility: 0,
            pending_debug_exceptions: 0,
            vmcs_link_pointer: u64::MAX,
        }
    }
}

/// Everything vmx-core writes to a VMCS: the controls, the host-state and
/// the guest-state area, and the few other control fields a minimal guest
/// needs (all zero here but the exception bitmap; the MSR-area counts,
/// the page-fault error-code mask and match and the CR0/CR4 guest/host
/// masks are always written as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmcsDescription {
    /// The five control fields.
    pub controls: Controls,
    /// The exception bitmap: a set bit makes that exception a VM exit.
    pub exception_bitmap: u32,
    /// The CR3-target count.
    pub cr3_target_count: u32,
    /// The VM-entry interruption-information field (0: inject nothing).
    pub entry_interruption_info: u32,
    /// The host-state area (without RSP and RIP, see [`HostState`]).
    pub host: HostState,
    /// The guest-state area.
    pub guest: GuestState,
}

impl VmcsDescription {
    /// Every exception a VM exit: a guest that shares the host's IDT (as
    /// [`GuestState::minimal_64bit`] does) must never deliver one through
    /// it, which would run the host's handlers in the guest.
    pub const ALL_EXCEPTIONS: u32 = u32::MAX;

    /// The controls a guest that only runs CPUID, VMCALL and HLT needs on
    /// this host: HLT exiting (CPUID and VMCALL exit unconditionally), a
    /// 64-bit host (host address-space size), an IA-32e mode guest, and
    /// every other control at its default.
    #[must_use]
    pub const fn minimal_requests() -> [controls::ControlRequest; 5] {
        use controls::ControlRequest;
        [
            ControlRequest {
                wanted: 0,
                required: 0,
            },
            ControlRequest::requiring(controls::primary::HLT_EXITING),
            ControlRequest {
                wanted: 0,
                required: 0,
            },
            ControlRequest::requiring(controls::exit::HOST_ADDRESS_SPACE_SIZE),
            ControlRequest::requiring(controls::entry::IA32E_MODE_GUEST),
        ]
    }

    /// The VMCS of vmx-core's minimal 64-bit guest on the processor `cpu`
    /// runs on, with the capabilities the entry checks need: the controls
    /// of [`VmcsDescription::minimal_requests`] computed from its
    /// capability MSRs, its host state captured, the guest of
    /// [`GuestState::minimal_64bit`] at `rip` on `rsp`, and every
    /// exception a VM exit ([`VmcsDescription::ALL_EXCEPTIONS`]: that guest
    /// shares the host's IDT). The one place this composition is made, for
    /// every front end.
    ///
    /// # Errors
    /// [`EntryCapabilities::read`]'s and [`HostState::capture`]'s faults;
    /// [`Error::ControlNotAllowed`] when the processor does not allow a
    /// control the guest needs.
    ///
    /// [`EntryCapabilities::read`]: crate::entry_checks::EntryCapabilities::read
    pub fn minimal_64bit<C: Cpu + ?Sized>(
        cpu: &mut C,
        rip: u64,
        rsp: u64,
    ) -> Result<(Self, crate::entry_checks::EntryCapabilities)> {
        let capabilities = crate::entry_checks::EntryCapabilities::read(cpu)?;
        let host = HostState::capture(cpu)?;
        let controls = Controls::compute(&capabilities.controls, Self::minimal_requests())?;
        let description = Self {
            controls,
            exception_bitmap: Self::ALL_EXCEPTIONS,
            cr3_target_count: 0,
            entry_interruption_info: 0,
            guest: GuestState::minimal_64bit(&host, rip, rsp),
            host,
        };
        Ok((description, capabilities))
    }

    /// The one field whose value differs between `self` and `other`, with
    /// `other`'s value; `None` when none or several differ.
    #[must_use]
    pub fn differing_field(&self, other: &Self) -> Option<(Field, u64)> {
        let mut differing = self
            .fields()
            .zip(other.fields())
            .filter(|((f1, v1), (f2, v2))| f1 != f2 || v1 != v2)
            .map(|(_, (field, value))| (field, value));
        let first = differing.next()?;
        differing.next().is_none().then_some(first)
    }

    /// Sets the member that `field` holds to `value` (truncated to the
    /// member's width, as VMWRITE truncates to the field's); `false` for a
    /// field the description does not hold.
    pub fn set(&mut self, field: Field, value: u64) -> bool {
        let low = value as u32;
        let selector = value as u16;
        let c = &mut self.controls;
        let h = &mut self.host;
        let g = &mut self.guest;
        match field {
            fields::PIN_BASED_VM_EXEC_CONTROL => c.pin_based = low,
            fields::CPU_BASED_VM_EXEC_CONTROL => c.primary = low,
            fields::SECONDARY_VM_EXEC_CONTROL => c.secondary = low,
            fields::VM_EXIT_CONTROLS => c.exit = low,
            fields::VM_ENTRY_CONTROLS => c.entry = low,
            fields::EXCEPTION_BITMAP => self.exception_bitmap = low,
            fields::CR3_TARGET_COUNT => self.cr3_target_count = low,
            fields::VM_ENTRY_INTR_INFO_FIELD => self.entry_interruption_info = low,
            // Written as 0, and not part of the description.
            fields::VM_EXIT_MSR_STORE_COUNT
            | fields::VM_EXIT_MSR_LOAD_COUNT
            | fields::VM_ENTRY_MSR_LOAD_COUNT
            | fields::PAGE_FAULT_ERROR_CODE_MASK
            | fields::PAGE_FAULT_ERROR_CODE_MATCH
            | fields::CR0_GUEST_HOST_MASK
            | fields::CR4_GUEST_HOST_MASK => {}
            fields::HOST_CR0 => h.cr0 = value,
            fields::HOST_CR3 => h.cr3 = value,
            fields::HOST_CR4 => h.cr4 = value,
            fields::HOST_ES_SELECTOR => h.selectors.es = selector,
            fields::HOST_CS_SELECTOR => h.selectors.cs = selector,
            fields::HOST_SS_SELECTOR => h.selectors.ss = selector,
            fields::HOST_DS_SELECTOR => h.selectors.ds = selector,
            fields::HOST_FS_SELECTOR => h.selectors.fs = selector,
            fields::HOST_GS_SELECTOR => h.selectors.gs = selector,
            fields::HOST_TR_SELECTOR => h.selectors.tr = selector,
            fields::HOST_FS_BASE => h.fs_base = value,
            fields::HOST_GS_BASE => h.gs_base = value,
            fields::HOST_TR_BASE => h.tr_base = value,
            fields::HOST_GDTR_BASE => h.gdtr.base = value,
            fields::HOST_IDTR_BASE => h.idtr.base = value,
            fields::HOST_IA32_SYSENTER_CS => h.sysenter_cs = u64::from(low),
            fields::HOST_IA32_SYSENTER_ESP => h.sysenter_esp = value,
            fields::HOST_IA32_SYSENTER_EIP => h.sysenter_eip = value,
            fields::HOST_IA32_EFER => h.efer = value,
            fields::HOST_IA32_PAT => h.pat = value,
            fields::GUEST_CR0 => g.cr0 = value,
            fields::GUEST_CR3 => g.cr3 = value,
            fields::GUEST_CR4 => g.cr4 = value,
            fields::GUEST_DR7 => g.dr7 = value,
            fields::GUEST_RSP => g.rsp = value,
            fields::GUEST_RIP => g.rip = value,
            fields::GUEST_RFLAGS => g.rflags = value,
            fields::GUEST_GDTR_BASE => g.gdtr.0 = value,
            fields::GUEST_GDTR_LIMIT => g.gdtr.1 = low,
            fields::GUEST_IDTR_BASE => g.idtr.0 = value,
            fields::GUEST_IDTR_LIMIT => g.idtr.1 = low,
            fields::GUEST_IA32_DEBUGCTL => g.debugctl = value,
            fields::GUEST_SYSENTER_CS => g.sysenter_cs = u64::from(low),
            fields::GUEST_SYSENTER_ESP => g.sysenter_esp = value,
            fields::GUEST_SYSENTER_EIP => g.sysenter_eip = value,
            fields::GUEST_ACTIVITY_STATE => g.activity_state = low,
            fields::GUEST_INTERRUPTIBILITY_INFO => g.interruptibility = low,
            fields::GUEST_PENDING_DBG_EXCEPTIONS => g.pending_debug_exceptions = value,
            fields::VMCS_LINK_POINTER => g.vmcs_link_pointer = value,
            fields::GUEST_IA32_EFER => g.efer = value,
            fields::GUEST_IA32_PAT => g.pat = value,
            other => return self.set_segment_field(other, value),
        }
        true
    }

    fn set_segment_field(&mut self, field: Field, value: u64) -> bool {
        let g = &mut self.guest;
        let (segment, part) = match field {
            fields::GUEST_ES_SELECTOR => (&mut g.es, 0),
            fields::GUEST_CS_SELECTOR => (&mut g.cs, 0),
            fields::GUEST_SS_SELECTOR => (&mut g.ss, 0),
            fields::GUEST_DS_SELECTOR => (&mut g.ds, 0),
            fields::GUEST_FS_SELECTOR => (&mut g.fs, 0),
            fields::GUEST_GS_SELECTOR => (&mut g.gs, 0),
            fields::GUEST_LDTR_SELECTOR => (&mut g.ldtr, 0),
            fields::GUEST_TR_SELECTOR => (&mut g.tr, 0),
            fields::GUEST_ES_BASE => (&mut g.es, 1),
            fields::GUEST_CS_BASE => (&mut g.cs, 1),
            fields::GUEST_SS_BASE => (&mut g.ss, 1),
            fields::GUEST_DS_BASE => (&mut g.ds, 1),
            fields::GUEST_FS_BASE => (&mut g.fs, 1),
            fields::GUEST_GS_BASE => (&mut g.gs, 1),
            fields::GUEST_LDTR_BASE => (&mut g.ldtr, 1),
            fields::GUEST_TR_BASE => (&mut g.tr, 1),
            fields::GUEST_ES_LIMIT => (&mut g.es, 2),
            fields::GUEST_CS_LIMIT => (&mut g.cs, 2),
            fields::GUEST_SS_LIMIT => (&mut g.ss, 2),
            fields::GUEST_DS_LIMIT => (&mut g.ds, 2),
            fields::GUEST_FS_LIMIT => (&mut g.fs, 2),
            fields::GUEST_GS_LIMIT => (&mut g.gs, 2),
            fields::GUEST_LDTR_LIMIT => (&mut g.ldtr, 2),
            fields::GUEST_TR_LIMIT => (&mut g.tr, 2),
            fields::GUEST_ES_AR_BYTES => (&mut g.es, 3),
            fields::GUEST_CS_AR_BYTES => (&mut g.cs, 3),
            fields::GUEST_SS_AR_BYTES => (&mut g.ss, 3),
            fields::GUEST_DS_AR_BYTES => (&mut g.ds, 3),
            fields::GUEST_FS_AR_BYTES => (&mut g.fs, 3),
            fields::GUEST_GS_AR_BYTES => (&mut g.gs, 3),
            fields::GUEST_LDTR_AR_BYTES => (&mut g.ldtr, 3),
            fields::GUEST_TR_AR_BYTES => (&mut g.tr, 3),
            _ => return false,
        };
        match part {
            0 => segment.selector = value as u16,
            1 => segment.base = value,
            2 => segment.limit = value as u32,
            _ => segment.access_rights = value as u32,
        }
        true
    }

    /// `written` as the current VMCS holds it: the five control fields read
    /// first with VMREAD, then every field [`VmcsDescription::fields`] lists
    /// for those controls. What is not in the VMCS (the host's GDTR and
    /// IDTR limits, its IA32_EFER and IA32_PAT when no control loads them,
    /// which the checks need) stays as in `written`. What a processor
    /// actually holds, for [`entry_checks::check`](crate::entry_checks::check)
    /// after a VM-entry failure.
    ///
    /// # Errors
    /// A VMREAD that fails or faults.
    pub fn read<C: Cpu + ?Sized>(cpu: &mut C, written: &Self) -> Result<Self> {
        let mut description = *written;
        for field in [
            fields::PIN_BASED_VM_EXEC_CONTROL,
            fields::CPU_BASED_VM_EXEC_CONTROL,
            fields::VM_EXIT_CONTROLS,
            fields::VM_ENTRY_CONTROLS,
        ] {
            description.set(field, read_field(cpu, field)?);
        }
        let template = description;
        for (field, _) in template.fields() {
            description.set(field, read_field(cpu, field)?);
        }
        Ok(description)
    }

    /// Every field and its value, in the order vmx-core writes them:
    /// controls, host state, guest state. The secondary controls are
    /// written only when the primary controls activate them.
    pub fn fields(&self) -> impl Iterator<Item = (Field, u64)> + '_ {
        let c = &self.controls;
        let h = &self.host;
        let g = &self.guest;
        let secondary = (c.primary & controls::primary::ACTIVATE_SECONDARY_CONTROLS != 0)
            .then_some((fields::SECONDARY_VM_EXEC_CONTROL, u64::from(c.secondary)));
        let controls = [
            (fields::PIN_BASED_VM_EXEC_CONTROL, u64::from(c.pin_based)),
            (fields::CPU_BASED_VM_EXEC_CONTROL, u64::from(c.primary)),
            (fields::VM_EXIT_CONTROLS, u64::from(c.exit)),
            (fields::VM_ENTRY_CONTROLS, u64::from(c.entry)),
            (fields::EXCEPTION_BITMAP, u64::from(self.exception_bitmap)),
            // SDM, "Initializing a VMCS": fields the processor uses get a
            // value. A #PF exits exactly as the exception bitmap's bit 14
            // says with mask = match = 0; the guest owns every bit of CR0
            // and CR4 with guest/host masks of 0 (the read shadows unused).
            (fields::PAGE_FAULT_ERROR_CODE_MASK, 0),
            (fields::PAGE_FAULT_ERROR_CODE_MATCH, 0),
            (fields::CR0_GUEST_HOST_MASK, 0),
            (fields::CR4_GUEST_HOST_MASK, 0),
            (fields::CR3_TARGET_COUNT, u64::from(self.cr3_target_count)),
            (fields::VM_EXIT_MSR_STORE_COUNT, 0),
            (fields::VM_EXIT_MSR_LOAD_COUNT, 0),
            (fields::VM_ENTRY_MSR_LOAD_COUNT, 0),
            (
                fields::VM_ENTRY_INTR_INFO_FIELD,
                u64::from(self.entry_interruption_info),
            ),
        ];
        let s = &h.selectors;
        let host = [
            (fields::HOST_CR0, h.cr0),
            (fields::HOST_CR3, h.cr3),
            (fields::HOST_CR4, h.cr4),
            (fields::HOST_ES_SELECTOR, u64::from(s.es)),
            (fields::HOST_CS_SELECTOR, u64::from(s.cs)),
            (fields::HOST_SS_SELECTOR, u64::from(s.ss)),
            (fields::HOST_DS_SELECTOR, u64::from(s.ds)),
            (fields::HOST_FS_SELECTOR, u64::from(s.fs)),
            (fields::HOST_GS_SELECTOR, u64::from(s.gs)),
            (fields::HOST_TR_SELECTOR, u64::from(s.tr)),
            (fields::HOST_FS_BASE, h.fs_base),
            (fields::HOST_GS_BASE, h.gs_base),
            (fields::HOST_TR_BASE, h.tr_base),
            (fields::HOST_GDTR_BASE, h.gdtr.base),
            (fields::HOST_IDTR_BASE, h.idtr.base),
            (fields::HOST_IA32_SYSENTER_CS, h.sysenter_cs),
            (fields::HOST_IA32_SYSENTER_ESP, h.sysenter_esp),
            (fields::HOST_IA32_SYSENTER_EIP, h.sysenter_eip),
        ];
        let host_msrs = [
            (c.exit & controls::exit::LOAD_EFER != 0).then_some((fields::HOST_IA32_EFER, h.efer)),
            (c.exit & controls::exit::LOAD_PAT != 0).then_some((fields::HOST_IA32_PAT, h.pat)),
        ];
        let segments = [
            (
                g.es,
                [
                    fields::GUEST_ES_SELECTOR,
                    fields::GUEST_ES_BASE,
                    fields::GUEST_ES_LIMIT,
                    fields::GUEST_ES_AR_BYTES,
                ],
            ),
            (
                g.cs,
                [
                    fields::GUEST_CS_SELECTOR,
                    fields::GUEST_CS_BASE,
                    fields::GUEST_CS_LIMIT,
                    fields::GUEST_CS_AR_BYTES,
                ],
            ),
            (
                g.ss,
                [
                    fields::GUEST_SS_SELECTOR,
                    fields::GUEST_SS_BASE,
                    fields::GUEST_SS_LIMIT,
                    fields::GUEST_SS_AR_BYTES,
                ],
            ),
            (
                g.ds,
                [
                    fields::GUEST_DS_SELECTOR,
                    fields::GUEST_DS_BASE,
                    fields::GUEST_DS_LIMIT,
                    fields::GUEST_DS_AR_BYTES,
                ],
            ),
            (
                g.fs,
                [
                    fields::GUEST_FS_SELECTOR,
                    fields::GUEST_FS_BASE,
                    fields::GUEST_FS_LIMIT,
                    fields::GUEST_FS_AR_BYTES,
                ],
            ),
            (
                g.gs,
                [
                    fields::GUEST_GS_SELECTOR,
                    fields::GUEST_GS_BASE,
                    fields::GUEST_GS_LIMIT,
                    fields::GUEST_GS_AR_BYTES,
                ],
            ),
            (
                g.ldtr,
                [
                    fields::GUEST_LDTR_SELECTOR,
                    fields::GUEST_LDTR_BASE,
                    fields::GUEST_LDTR_LIMIT,
                    fields::GUEST_LDTR_AR_BYTES,
                ],
            ),
            (
                g.tr,
                [
                    fields::GUEST_TR_SELECTOR,
                    fields::GUEST_TR_BASE,
                    fields::GUEST_TR_LIMIT,
                    fields::GUEST_TR_AR_BYTES,
                ],
            ),
        ];
        let segment_fields = segments
            .into_iter()
            .flat_map(|(segment, [sel, base, limit, ar])| {
                [
                    (sel, u64::from(segment.selector)),
                    (base, segment.base),
                    (limit, u64::from(segment.limit)),
                    (ar, u64::from(segment.access_rights)),
                ]
            });
        let guest = [
            (fields::GUEST_CR0, g.cr0),
            (fields::GUEST_CR3, g.cr3),
            (fields::GUEST_CR4, g.cr4),
            (fields::GUEST_DR7, g.dr7),
            (fields::GUEST_RSP, g.rsp),
            (fields::GUEST_RIP, g.rip),
            (fields::GUEST_RFLAGS, g.rflags),
            (fields::GUEST_GDTR_BASE, g.gdtr.0),
            (fields::GUEST_GDTR_LIMIT, u64::from(g.gdtr.1)),
            (fields::GUEST_IDTR_BASE, g.idtr.0),
            (fields::GUEST_IDTR_LIMIT, u64::from(g.idtr.1)),
            (fields::GUEST_IA32_DEBUGCTL, g.debugctl),
            (fields::GUEST_SYSENTER_CS, g.sysenter_cs),
            (fields::GUEST_SYSENTER_ESP, g.sysenter_esp),
            (fields::GUEST_SYSENTER_EIP, g.sysenter_eip),
            (fields::GUEST_ACTIVITY_STATE, u64::from(g.activity_state)),
            (
                fields::GUEST_INTERRUPTIBILITY_INFO,
                u64::from(g.interruptibility),
            ),
            (
                fields::GUEST_PENDING_DBG_EXCEPTIONS,
                g.pending_debug_exceptions,
            ),
            (fields::VMCS_LINK_POINTER, g.vmcs_link_pointer),
        ];
        let guest_msrs = [
            (c.entry & controls::entry::LOAD_EFER != 0)
                .then_some((fields::GUEST_IA32_EFER, g.efer)),
            (c.entry & controls::entry::LOAD_PAT != 0).then_some((fields::GUEST_IA32_PAT, g.pat)),
        ];
        controls
            .into_iter()
            .chain(secondary)
            .chain(host)
            .chain(host_msrs.into_iter().flatten())
            .chain(segment_fields)
            .chain(guest)
            .chain(guest_msrs.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldType;
    use crate::sim::{self, SimCpu};

    #[test]
    fn the_host_state_is_captured_from_the_processor() {
        let mut cpu = SimCpu::skylake();
        let host = HostState::capture(&mut cpu).unwrap();
        assert_eq!(host.selectors, sim::SELECTORS);
        assert_eq!((host.gdtr, host.idtr), (sim::TABLES.gdtr, sim::TABLES.idtr));
        assert_eq!((host.cr3, host.tr_base), (sim::CR3, sim::TR_BASE));
        assert_eq!((host.cr0, host.cr4), (sim::GRUB_CR0, sim::GRUB_CR4));
        assert_eq!((host.efer, host.pat), (sim::EFER, 0x0007_0406_0007_0406));
    }

    #[test]
    fn a_faulting_msr_read_stops_the_capture_and_names_the_msr() {
        let mut cpu = SimCpu::skylake();
        cpu.faulting_msrs.push(IA32_PAT);
        assert_eq!(
            HostState::capture(&mut cpu),
            Err(Error::Faulted {
                instruction: Instruction::Rdmsr(IA32_PAT),
                fault: crate::cpu::Fault::GeneralProtection
            })
        );
    }

    #[test]
    fn the_minimal_guest_runs_in_the_hosts_address_space_on_its_own_stack() {
        let mut cpu = SimCpu::skylake();
        let host = HostState::capture(&mut cpu).unwrap();
        let guest = GuestState::minimal_64bit(&host, 0x20_0000, 0x30_0000);
        assert_eq!(
            (guest.cr0, guest.cr3, guest.cr4),
            (host.cr0, host.cr3, host.cr4)
        );
        assert_eq!((guest.rip, guest.rsp), (0x20_0000, 0x30_0000));
        assert_eq!(guest.cs.selector, host.selectors.cs);
        assert!(guest.cs.long() && !guest.cs.default_big());
        assert!(!guest.fs.usable() && !guest.gs.usable() && !guest.ldtr.usable());
        assert_eq!(
            (guest.tr.selector, guest.tr.base),
            (host.selectors.tr, host.tr_base)
        );
        assert_eq!(guest.vmcs_link_pointer, u64::MAX);
    }

    #[test]
    fn the_minimal_vmcs_is_composed_in_one_place_and_passes_every_rule() {
        // In VMX operation, as a hypervisor describes its VMCS: CR0.NE and
        // CR4.VMXE set, which the fixed bits require of host and guest.
        let mut cpu = SimCpu::skylake();
        let mut processor = crate::Processor::new();
        processor
            .enter(&mut cpu, sim::SimPage::new(0x1000))
            .unwrap();
        let (vmcs, capabilities) =
            VmcsDescription::minimal_64bit(&mut cpu, 0x20_0000, 0x30_0000).unwrap();
        let host = HostState::capture(&mut cpu).unwrap();
        assert_eq!(vmcs.host, host);
        assert_eq!(
            vmcs.guest,
            GuestState::minimal_64bit(&host, 0x20_0000, 0x30_0000)
        );
        assert_eq!(vmcs.exception_bitmap, VmcsDescription::ALL_EXCEPTIONS);
        assert_eq!(
            vmcs.controls,
            Controls::compute(&capabilities.controls, VmcsDescription::minimal_requests()).unwrap()
        );
        let failed = crate::entry_checks::check(&vmcs, &capabilities);
        assert!(
            failed.is_empty(),
            "{:?}",
            failed.iter().collect::<std::vec::Vec<_>>()
        );
        cpu.faulting_msrs.push(IA32_PAT);
        assert!(VmcsDescription::minimal_64bit(&mut cpu, 0x20_0000, 0x30_0000).is_err());
    }

    #[test]
    fn every_control_field_the_minimal_guest_makes_the_processor_use_is_written() {
        // SDM, "Initializing a VMCS": software should write every field the
        // processor will use; VMCLEAR does not give them defined values.
        // With every exception a VM exit, a #PF in the guest consults the
        // page-fault error-code mask and match; MOV to CR0 and CR4 consult
        // the guest/host masks. Written as 0: every #PF exits, the guest
        // owns CR0 and CR4 (their read shadows then are never used).
        let mut cpu = SimCpu::skylake();
        let host = HostState::capture(&mut cpu).unwrap();
        let vmcs = VmcsDescription {
            guest: GuestState::minimal_64bit(&host, 0x20_0000, 0x30_0000),
            host,
            exception_bitmap: VmcsDescription::ALL_EXCEPTIONS,
            ..VmcsDescription::default()
        };
        for field in [
            fields::PAGE_FAULT_ERROR_CODE_MASK,
            fields::PAGE_FAULT_ERROR_CODE_MATCH,
            fields::CR0_GUEST_HOST_MASK,
            fields::CR4_GUEST_HOST_MASK,
        ] {
            assert_eq!(
                vmcs.fields().find(|&(f, _)| f == field),
                Some((field, 0)),
                "{field}"
            );
            // Read back, it changes nothing in the description.
            let mut read = vmcs;
            assert!(read.set(field, 0), "{field}");
            assert_eq!(read, vmcs);
        }
    }

    #[test]
    fn every_field_written_is_well_formed_writable_and_written_once() {
        let mut cpu = SimCpu::skylake();
        let host = HostState::capture(&mut cpu).unwrap();
        let vmcs = VmcsDescription {
            guest: GuestState::minimal_64bit(&host, 0x20_0000, 0x30_0000),
            host,
            ..VmcsDescription::default()
        };
        let fields: std::vec::Vec<Field> = vmcs.fields().map(|(field, _)| field).collect();
        for field in &fields {
            assert!(field.is_well_formed(), "{field}");
            assert_ne!(field.field_type(), FieldType::ReadOnlyData, "{field}");
            assert!(!field.is_high(), "{field}");
        }
        let mut unique = fields.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), fields.len());
        // Secondary controls, the EFER and PAT fields only when a control
        // asks for them.
        assert!(!fields.contains(&fields::SECONDARY_VM_EXEC_CONTROL));
        assert!(!fields.contains(&fields::HOST_IA32_EFER));
        let mut with_msrs = vmcs;
        with_msrs.controls.exit |= controls::exit::LOAD_EFER | controls::exit::LOAD_PAT;
        with_msrs.controls.primary |= controls::primary::ACTIVATE_SECONDARY_CONTROLS;
        let fields: std::vec::Vec<Field> = with_msrs.fields().map(|(field, _)| field).collect();
        assert!(
            fields.contains(&fields::HOST_IA32_EFER) && fields.contains(&fields::HOST_IA32_PAT)
        );
        assert!(fields.contains(&fields::SECONDARY_VM_EXEC_CONTROL));
        assert_eq!(
            vmcs.differing_field(&with_msrs),
            None,
            "several fields differ"
        );
        assert_eq!(vmcs.differing_field(&vmcs), None, "none differs");
    }
}
