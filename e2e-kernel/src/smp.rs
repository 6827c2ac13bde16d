//! The processors: starting the application processors (INIT-SIPI-SIPI) and
//! running work on any of them.
//!
//! Processor 0 is the BSP; the others follow in MADT order. Each AP, once up,
//! spins on its mailbox: [`Processors::run_on`] posts a pointer to the work
//! there (Release), the AP runs it and clears the mailbox (Release), which the
//! BSP waits for (Acquire). Interrupts stay disabled on every processor.

use core::fmt;
use core::hint::spin_loop;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, fence};

use crate::acpi::Madt;
use crate::lapic::LocalApic;
use crate::multiboot2::BootInfo;
use crate::trampoline::{AP_BOOT_STACK, AP_STARTUP_VECTOR, AP_TRAMPOLINE_ADDR};
use crate::{idt, pit, trampoline, tss};

/// The most processors the kernel handles.
pub const MAX_PROCESSORS: usize = 16;

/// Work to run on a processor.
pub type Work<'a> = dyn FnMut() + 'a;

/// One AP's mailbox.
struct Mailbox {
    /// Set by the AP when it waits for work.
    online: AtomicBool,
    /// A `*mut &mut Work` while work is posted, null otherwise.
    work: AtomicPtr<()>,
}

static MAILBOXES: [Mailbox; MAX_PROCESSORS] = [const {
    Mailbox {
        online: AtomicBool::new(false),
        work: AtomicPtr::new(null_mut()),
    }
}; MAX_PROCESSORS];

/// The index of the AP being started, for it to find its mailbox.
static AP_BOOT_INDEX: AtomicUsize = AtomicUsize::new(0);

/// Stack size of each AP.
const AP_STACK_SIZE: usize = 32 * 1024;

/// One AP's stack.
#[repr(C, align(16))]
struct Stack([u8; AP_STACK_SIZE]);

/// The APs' stacks; only their addresses are taken, the APs use them as stacks.
static mut AP_STACKS: [Stack; MAX_PROCESSORS - 1] =
    [const { Stack([0; AP_STACK_SIZE]) }; MAX_PROCESSORS - 1];

/// INIT to start-up IPI delay (SDM "MP Initialization Protocol Algorithm for
/// MP Systems"; Linux waits 10 ms).
const INIT_DELAY_US: u64 = 10_000;
/// Between the two start-up IPIs.
const STARTUP_DELAY_US: u64 = 200;
/// How long an AP may take to reach its mailbox.
const ONLINE_TIMEOUT_MS: u32 = 200;

/// Why the processors could not all be started.
#[derive(Debug, Clone, Copy)]
pub enum StartError {
    /// The memory map does not show the trampoline page as free RAM.
    TrampolinePageUnavailable,
    /// The BSP's local APIC ID is not in the MADT.
    BspNotListed(u8),
    /// An AP did not come online.
    Timeout {
        /// Its processor index.
        index: usize,
        /// Its local APIC ID.
        apic_id: u8,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrampolinePageUnavailable => write!(
                f,
                "the AP trampoline page {AP_TRAMPOLINE_ADDR:#x} is not free RAM"
            ),
            Self::BspNotListed(apic_id) => {
                write!(f, "the BSP's local APIC ID {apic_id} is not in the MADT")
            }
            Self::Timeout { index, apic_id } => write!(
                f,
                "processor {index} (APIC ID {apic_id}) did not come online within {ONLINE_TIMEOUT_MS} ms"
            ),
        }
    }
}

/// There is no processor with that index.
#[derive(Debug, Clone, Copy)]
pub struct NoSuchProcessor;

/// The started processors.
#[derive(Debug)]
pub struct Processors {
    lapic: LocalApic,
    apic_ids: [u8; MAX_PROCESSORS],
    count: usize,
}

impl Processors {
    /// Starts every processor the MADT lists; returns when all wait for work.
    ///
    /// # Errors
    /// [`StartError`] when a processor cannot be started.
    pub fn start(madt: &Madt, boot_info: BootInfo<'_>) -> Result<Self, StartError> {
        let base = NonNull::new(madt.local_apic_address as usize as *mut u32)
            .unwrap_or(NonNull::dangling());
        // SAFETY: the MADT gives the xAPIC register page, identity mapped
        // like all of the first 4 GiB; the firmware leaves the APIC in xAPIC
        // mode.
        let lapic = unsafe { LocalApic::new(base) };
        let bsp = lapic.id();
        if !madt.apic_ids().contains(&bsp) {
            return Err(StartError::BspNotListed(bsp));
        }
        let mut processors = Self {
            lapic,
            apic_ids: [bsp; MAX_PROCESSORS],
            count: 1,
        };
        for &apic_id in madt.apic_ids().iter().filter(|&&id| id != bsp) {
            processors.apic_ids[processors.count] = apic_id;
            processors.count += 1;
        }
        if processors.count > 1 {
            install_trampoline(boot_info)?;
            lapic.enable();
            for index in 1..processors.count {
                processors.start_ap(index)?;
            }
        }
        Ok(processors)
    }

    fn start_ap(&self, index: usize) -> Result<(), StartError> {
        let apic_id = self.apic_ids[index];
        // AP `index` runs on `AP_STACKS[index - 1]`, whose top is where
        // `AP_STACKS[index]` starts.
        let stacks = (&raw mut AP_STACKS).cast::<Stack>();
        let stack_top = stacks.wrapping_add(index).addr();
        AP_BOOT_INDEX.store(index, Ordering::Relaxed);
        AP_BOOT_STACK.store(stack_top as u64, Ordering::Relaxed);
        // Both stores are visible before the IPIs go out.
        fence(Ordering::SeqCst);
        self.lapic.send_init(apic_id);
        pit::sleep_us(INIT_DELAY_US);
        for _ in 0..2 {
            self.lapic.send_startup(apic_id, AP_STARTUP_VECTOR);
            pit::sleep_us(STARTUP_DELAY_US);
        }
        for _ in 0..ONLINE_TIMEOUT_MS {
            if MAILBOXES[index].online.load(Ordering::Acquire) {
                return Ok(());
            }
            pit::sleep_us(1000);
        }
        Err(StartError::Timeout { index, apic_id })
    }

    /// How many processors there are, numbered `0..count()`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The local APIC ID of processor `index`.
    pub fn apic_id(&self, index: usize) -> Option<u8> {
        self.apic_ids[..self.count].get(index).copied()
    }

    /// The local APIC (each processor reaches its own at the same address).
    pub fn lapic(&self) -> LocalApic {
        self.lapic
    }

    /// Runs `work` on processor `index` and returns when it has finished.
    ///
    /// # Errors
    /// [`NoSuchProcessor`] when `index` is out of range; `work` has not run.
    pub fn run_on(&mut self, index: usize, work: &mut Work<'_>) -> Result<(), NoSuchProcessor> {
        if index >= self.count {
            return Err(NoSuchProcessor);
        }
        if index == 0 {
            work();
            return Ok(());
        }
        let mailbox = &MAILBOXES[index];
        let mut work: &mut Work<'_> = work;
        mailbox
            .work
            .store((&raw mut work).cast::<()>(), Ordering::Release);
        while !mailbox.work.load(Ordering::Acquire).is_null() {
            spin_loop();
        }
        Ok(())
    }
}

/// Copies the trampoline to its page below 1 MiB.
fn install_trampoline(boot_info: BootInfo<'_>) -> Result<(), StartError> {
    let code = trampoline::code();
    let start = AP_TRAMPOLINE_ADDR as u64;
    if !boot_info.is_available_ram(start, start + code.len() as u64) {
        return Err(StartError::TrampolinePageUnavailable);
    }
    // SAFETY: the memory map says the page is free RAM; identity mapped;
    // nothing else in the kernel uses memory below 1 MiB.
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), AP_TRAMPOLINE_ADDR as *mut u8, code.len());
    }
    Ok(())
}

/// Where an AP arrives from the trampoline, on its own stack: announces
/// itself in its mailbox and runs the work posted there, forever.
pub extern "C" fn ap_main() -> ! {
    idt::load();
    let index = AP_BOOT_INDEX.load(Ordering::Relaxed);
    tss::load(index);
    let mailbox = &MAILBOXES[index];
    mailbox.online.store(true, Ordering::Release);
    loop {
        let posted = mailbox.work.load(Ordering::Acquire);
        if posted.is_null() {
            spin_loop();
            continue;
        }
        // SAFETY: `run_on` posted a pointer to a `&mut Work` on its stack and
        // neither touches nor drops it until this processor clears the mailbox.
        let work = unsafe { &mut *posted.cast::<&mut Work<'_>>() };
        work();
        mailbox.work.store(null_mut(), Ordering::Release);
    }
}
