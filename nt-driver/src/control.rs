//! QUERY, ENTER, LEAVE, STATUS and unload, over vmx-core's platform
//! traits: the kernel's "run this on processor i" and "give me a page with
//! its physical address" are the only services used.

use alloc::vec::Vec;

use vmx_core::diagnosis::Recorder;
use vmx_core::{
    CpuObserver, OutOfMemory, PageAllocator, Processor, ProcessorError, ProcessorStatus,
    Processors, diagnose, enter_all, leave_all,
};
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Ioctl, Outcome, QueryWriter};

use crate::dispatch::Completion;
use crate::ioctl::{Valid, overflow};
use crate::log::Log;
use crate::ntstatus::{STATUS_DEVICE_BUSY, STATUS_INVALID_PARAMETER, STATUS_SUCCESS};
use crate::power::PowerState;

/// The VMX state of every processor, and the services to change it.
pub struct Control<Pr: Processors, A: PageAllocator> {
    processors: Pr,
    allocator: A,
    slots: Vec<Processor<A::Page>>,
    power: PowerState,
}

impl<Pr: Processors, A: PageAllocator> core::fmt::Debug for Control<Pr, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Control")
            .field("processors", &self.slots.len())
            .field("entered", &self.entered())
            .field("power", &self.power)
            .finish_non_exhaustive()
    }
}

impl<Pr: Processors, A: PageAllocator> Control<Pr, A> {
    /// State for every processor `processors` has, none in VMX operation.
    ///
    /// # Errors
    /// [`OutOfMemory`] when the per-processor state cannot be allocated
    /// (in the kernel an allocation failure must not panic).
    pub fn new(processors: Pr, allocator: A) -> Result<Self, OutOfMemory> {
        let count = processors.count();
        let mut slots = Vec::new();
        slots.try_reserve_exact(count).map_err(|_| OutOfMemory)?;
        slots.extend((0..count).map(|_| Processor::new()));
        Ok(Self {
            processors,
            allocator,
            slots,
            power: PowerState::Running,
        })
    }

    /// The number of logical processors.
    #[must_use]
    pub fn processor_count(&self) -> usize {
        self.slots.len()
    }

    /// How many processors are in VMX operation.
    #[must_use]
    pub fn entered(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_entered()).count()
    }

    /// Each processor's status, in order.
    pub fn statuses(&self) -> impl ExactSizeIterator<Item = ProcessorStatus> + '_ {
        self.slots.iter().map(Processor::status)
    }

    /// The services, for inspection.
    pub fn services(&self) -> (&Pr, &A) {
        (&self.processors, &self.allocator)
    }

    /// The services, to change them (a test's simulated machine).
    pub fn services_mut(&mut self) -> (&mut Pr, &mut A) {
        (&mut self.processors, &mut self.allocator)
    }

    /// Where the driver stands with respect to a sleep or hibernation.
    #[must_use]
    pub fn power_state(&self) -> PowerState {
        self.power
    }

    /// The system is about to leave S0 (see [`crate::power`]): every
    /// processor in VMX operation leaves it, its region freed, and the
    /// driver remembers to enter again on resume. ENTER and LEAVE are
    /// refused until then. A second notification changes nothing.
    ///
    /// A processor that cannot leave (VMXOFF failing, e.g. under the
    /// dual-monitor treatment of SMM) stays recorded as entered and keeps
    /// its region; [`Control::resume`] deals with it.
    pub fn suspend(&mut self, log: &mut dyn Log) {
        if let PowerState::Suspended { .. } = self.power {
            return;
        }
        let entered = self.entered();
        self.power = PowerState::Suspended {
            reenter: entered != 0,
        };
        if entered == 0 {
            return;
        }
        log.log(format_args!(
            "leaving VMX operation before the system sleeps or hibernates ({entered} processors)"
        ));
        let outcome = self.leave(log);
        if outcome.entered_after != 0 {
            for (index, slot) in self.slots.iter().enumerate() {
                if slot.is_entered() {
                    log.log(format_args!(
                        "processor {index} stays in VMX operation through the transition"
                    ));
                }
            }
        }
    }

    /// The system has re-entered S0 (see [`crate::power`]).
    ///
    /// A processor still recorded as entered could not leave before the
    /// transition: if the system slept, the processor was powered off and
    /// is outside VMX operation now, so VMXOFF would raise #UD (a bug
    /// check); if the transition was abandoned, it is still inside. Its
    /// state is unknown, so it is sent nothing: its record is dropped and
    /// its region leaked (never freed: the processor may still use it),
    /// and said so. Then, if VMX operation was on before the transition,
    /// every processor enters it again (with vmx-core's rollback: on a
    /// failure none stays entered, and the log says to send ENTER). A
    /// resume without a suspend changes nothing.
    pub fn resume(&mut self, log: &mut dyn Log) {
        let PowerState::Suspended { reenter } = self.power else {
            return;
        };
        self.power = PowerState::Running;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_entered() {
                log.log(format_args!(
                    "processor {index}: its VMX state after the transition is unknown; it is \
                     sent no VMXOFF and its VMXON region is not freed"
                ));
                // Dropping the record drops the page value without giving it
                // back to the allocator: the memory stays allocated.
                *slot = Processor::new();
            }
        }
        if !reenter {
            return;
        }
        let outcome = self.enter(log);
        if outcome.failure.is_some() {
            log.log(format_args!(
                "entering VMX operation again after the resume failed; every processor is out \
                 of VMX operation: send ENTER to try again"
            ));
        }
    }

    fn transition_refusal(&self, valid: Valid, log: &mut dyn Log) -> Option<Completion> {
        let changes = matches!(valid.ioctl, Ioctl::Enter | Ioctl::Leave);
        if changes && self.power != PowerState::Running {
            log.log(format_args!(
                "{}: the system is changing its power state; try again after it resumes",
                valid.ioctl.name()
            ));
            return Some(Completion::status(STATUS_DEVICE_BUSY));
        }
        None
    }

    /// Enters VMX operation on every processor; if one fails, those before
    /// it leave again (vmx-core's [`enter_all`]).
    pub fn enter(&mut self, log: &mut dyn Log) -> Outcome {
        let before = self.entered();
        let result = enter_all(&mut self.processors, &mut self.allocator, &mut self.slots);
        let after = self.entered();
        if let Ok(count) = result {
            for (index, status) in self.statuses().enumerate() {
                if let ProcessorStatus::On {
                    region,
                    revision_id,
                    ..
                } = status
                {
                    log.log(format_args!(
                        "processor {index}: in VMX operation, VMXON region at {region:#x}, \
                         revision {revision_id:#x}"
                    ));
                }
            }
            log.log(format_args!(
                "VMX entered on every processor ({count} of {})",
                self.slots.len()
            ));
        }
        outcome("ENTER", result, after.saturating_sub(before), after, log)
    }

    /// Leaves VMX operation on every processor that entered it and frees
    /// their regions (vmx-core's [`leave_all`]).
    pub fn leave(&mut self, log: &mut dyn Log) -> Outcome {
        let before = self.entered();
        let result = leave_all(&mut self.processors, &mut self.allocator, &mut self.slots);
        let after = self.entered();
        if let Ok(count) = result {
            log.log(format_args!(
                "VMX left on every processor that had entered ({count})"
            ));
        }
        outcome("LEAVE", result, before.saturating_sub(after), after, log)
    }

    /// Records what [`diagnose`] reads on every processor into `out`
    /// (vmx-ioctl's QUERY layout). Returns the size of the whole reply,
    /// which may exceed `out`: then only the header was written in full.
    /// Reads only; changes nothing.
    pub fn query(&mut self, out: &mut [u8]) -> usize {
        let mut writer = QueryWriter::new(out);
        for index in 0..self.slots.len() {
            writer.begin_processor();
            let mut ran = false;
            let result = self.processors.run_on(index, &mut |cpu| {
                ran = true;
                let mut recorder = Recorder::new(CpuObserver(cpu), |o| writer.push(o));
                diagnose(&mut recorder);
            });
            if result.is_err() || !ran {
                writer.mark_unavailable();
            }
        }
        writer.finish()
    }

    /// Runs a validated IOCTL, writing its reply into `buffer` (the system
    /// buffer, at least `valid.output_length` bytes).
    pub fn run(&mut self, valid: Valid, buffer: &mut [u8], log: &mut dyn Log) -> Completion {
        let count = self.slots.len();
        let processors = u32::try_from(count).unwrap_or(u32::MAX);
        let Some(out) = buffer.get_mut(..valid.output_length) else {
            return Completion::status(STATUS_INVALID_PARAMETER);
        };
        if let Some(refusal) = self.transition_refusal(valid, log) {
            return refusal;
        }
        let size = match valid.ioctl {
            Ioctl::Query => {
                let size = self.query(out);
                if size > out.len() {
                    return overflow(out, size, count);
                }
                size
            }
            Ioctl::Enter | Ioctl::Leave => {
                let outcome = if valid.ioctl == Ioctl::Enter {
                    self.enter(log)
                } else {
                    self.leave(log)
                };
                outcome.encode_reply(processors, out);
                Outcome::REPLY_SIZE
            }
            Ioctl::Status => match StatusEntry::encode_reply(self.statuses(), out) {
                Some(size) => size,
                None => return Completion::status(STATUS_INVALID_PARAMETER),
            },
        };
        Completion {
            status: STATUS_SUCCESS,
            information: size,
        }
    }

    /// Before the driver unloads: leaves VMX operation wherever it was
    /// entered, freeing every region. A processor that cannot leave keeps
    /// its region (freeing memory the processor still uses as its VMXON
    /// region would corrupt whatever is allocated there next): that page
    /// is leaked on purpose, and said so.
    pub fn unload(&mut self, log: &mut dyn Log) {
        if self.entered() == 0 {
            return;
        }
        let outcome = self.leave(log);
        if outcome.entered_after != 0 {
            for (index, slot) in self.slots.iter().enumerate() {
                if slot.is_entered() {
                    log.log(format_args!(
                        "processor {index} stays in VMX operation; its VMXON region is not freed"
                    ));
                }
            }
        }
    }
}

/// The reply to ENTER or LEAVE (`request`) from vmx-core's result, with
/// `after` processors in VMX operation: a success changed the processors it
/// counts, a failure is logged and changed `changed_on_failure`.
fn outcome(
    request: &str,
    result: Result<usize, ProcessorError>,
    changed_on_failure: usize,
    after: usize,
    log: &mut dyn Log,
) -> Outcome {
    match result {
        Ok(count) => Outcome {
            changed: u32::try_from(count).unwrap_or(u32::MAX),
            entered_after: u32::try_from(after).unwrap_or(u32::MAX),
            failure: None,
        },
        Err(error) => {
            log.log(format_args!(
                "{request} failed: {error}; {after} processors in VMX operation"
            ));
            Outcome::failed(&error, changed_on_failure, after)
        }
    }
}
