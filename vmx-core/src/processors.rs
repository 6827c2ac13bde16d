//! Entering and leaving VMX operation on every logical processor, with
//! rollback: either every processor enters, or none stays entered.

use crate::error::{Error, ProcessorError};
use crate::operation::Processor;
use crate::platform::{PageAllocator, Processors};

/// Enters VMX operation on every logical processor, `slots[i]` holding
/// processor `i`'s state.
///
/// Pages are allocated on the calling processor, one before each
/// processor's turn; the work on processor `i` only prepares its page and
/// enters. If processor `k` fails, processors `k-1` down to `0` leave again
/// and every page is freed: the machine is as it was (but for an
/// IA32_FEATURE_CONTROL that entering locked, which stays locked with VMX
/// enabled until reset), and the error names
/// `k`. Returns the number of processors that entered.
///
/// # Errors
/// [`ProcessorError`] with the first processor that failed and why;
/// [`Error::TooManyProcessors`] (processor 0, nothing done) when `slots` is
/// shorter than the processor count; [`Error::AlreadyEntered`] (nothing
/// done) when any processor is already entered.
pub fn enter_all<Pr, A>(
    processors: &mut Pr,
    allocator: &mut A,
    slots: &mut [Processor<A::Page>],
) -> Result<usize, ProcessorError>
where
    Pr: Processors + ?Sized,
    A: PageAllocator + ?Sized,
{
    let count = processors.count();
    if slots.len() < count {
        let error = Error::TooManyProcessors {
            count,
            capacity: slots.len(),
        };
        return Err(ProcessorError {
            processor: 0,
            error,
        });
    }
    if let Some(processor) = slots[..count].iter().position(Processor::is_entered) {
        return Err(ProcessorError {
            processor,
            error: Error::AlreadyEntered,
        });
    }
    for index in 0..count {
        if let Err(error) = enter_one(processors, allocator, &mut slots[index], index) {
            // Best effort: a processor that cannot leave stays recorded as
            // entered, so a later `leave_all` can try again; the error
            // reported is the one that stopped entering.
            let _ = leave_range(processors, allocator, &mut slots[..index]);
            return Err(ProcessorError {
                processor: index,
                error,
            });
        }
    }
    Ok(count)
}

fn enter_one<Pr, A>(
    processors: &mut Pr,
    allocator: &mut A,
    slot: &mut Processor<A::Page>,
    index: usize,
) -> Result<(), Error>
where
    Pr: Processors + ?Sized,
    A: PageAllocator + ?Sized,
{
    let page = allocator.allocate().map_err(|_| Error::OutOfMemory)?;
    let mut page = Some(page);
    let mut result = None;
    let ran = processors.run_on(index, &mut |cpu| {
        if let Some(page) = page.take() {
            result = Some(slot.enter(cpu, page));
        }
    });
    // The page is either still here (the work did not run), in the slot
    // (entered), or handed back in the failure.
    if let Some(unused) = page {
        allocator.free(unused);
    }
    match (ran, result) {
        (Ok(()), Some(Ok(()))) => Ok(()),
        (_, Some(Err(failure))) => {
            allocator.free(failure.region);
            Err(failure.error)
        }
        (Err(_), _) | (Ok(()), None) => Err(Error::ProcessorUnavailable),
    }
}

/// Leaves VMX operation on every processor that vmx-core entered, frees
/// their pages, and returns how many left.
///
/// # Errors
/// [`Error::NotEntered`] (processor 0) when no processor is entered;
/// otherwise the first processor that could not leave. The others still
/// leave; a processor that could not leave stays recorded as entered.
pub fn leave_all<Pr, A>(
    processors: &mut Pr,
    allocator: &mut A,
    slots: &mut [Processor<A::Page>],
) -> Result<usize, ProcessorError>
where
    Pr: Processors + ?Sized,
    A: PageAllocator + ?Sized,
{
    if !slots.iter().any(Processor::is_entered) {
        return Err(ProcessorError {
            processor: 0,
            error: Error::NotEntered,
        });
    }
    leave_range(processors, allocator, slots)
}

/// Leaves every entered processor of `slots`, last first.
fn leave_range<Pr, A>(
    processors: &mut Pr,
    allocator: &mut A,
    slots: &mut [Processor<A::Page>],
) -> Result<usize, ProcessorError>
where
    Pr: Processors + ?Sized,
    A: PageAllocator + ?Sized,
{
    let mut left = 0;
    let mut first_error = None;
    for (index, slot) in slots.iter_mut().enumerate().rev() {
        if !slot.is_entered() {
            continue;
        }
        let mut result = None;
        let ran = processors.run_on(index, &mut |cpu| result = Some(slot.leave(cpu)));
        let error = match (ran, result) {
            (_, Some(Ok(page))) => {
                allocator.free(page);
                left += 1;
                continue;
            }
            (_, Some(Err(failure))) => {
                if let Some(page) = failure.region {
                    allocator.free(page);
                }
                failure.error
            }
            (Err(_), _) | (Ok(()), None) => Error::ProcessorUnavailable,
        };
        // Leaving goes last to first; report the lowest-numbered failure.
        first_error = Some(ProcessorError {
            processor: index,
            error,
        });
    }
    match first_error {
        None => Ok(left),
        Some(error) => Err(error),
    }
}
