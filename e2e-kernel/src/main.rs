//! A freestanding test kernel for vmx-core's enter/leave paths.
//!
//! GRUB loads it (multiboot2) into an emulated PC: Bochs, whose CPU models
//! emulate VT-x, or QEMU TCG, which has none. It starts every processor,
//! runs the scenario the command line names and reports each step on COM1,
//! ending with one `E2E RESULT: PASS|FAIL ...` line and an exit signal
//! (see [`exit`]). `cargo xtask e2e` builds it, boots it and checks both.

#![no_std]
#![no_main]

mod acpi;
mod boot;
mod dump;
mod exit;
mod fault_recovery;
mod idt;
mod lapic;
mod multiboot2;
mod pages;
mod pit;
mod platform;
mod port;
mod scenario;
mod serial;
mod smp;
mod trampoline;

use multiboot2::BootInfo;
use scenario::Scenario;
use smp::Processors;

/// The BSP's entry from [`boot`], in long mode on the boot stack.
extern "C" fn kmain(mb2_info: usize, magic: u32) -> ! {
    serial::init();
    println!("e2e-kernel: started");
    if magic != boot::MULTIBOOT2_BOOTLOADER_MAGIC {
        exit::fail(format_args!(
            "not started by a multiboot2 loader (EAX {magic:#x})"
        ));
    }
    // SAFETY: a multiboot2 loader passed this address (the magic says so);
    // the kernel never writes the structure.
    let info = unsafe { BootInfo::from_address(mb2_info) };
    let command_line = info.command_line().unwrap_or_default();
    println!("command line: {command_line}");
    let scenario = Scenario::from_command_line(command_line)
        .unwrap_or_else(|error| exit::fail(format_args!("{error}")));

    idt::init();
    idt::load();
    match fault_recovery::self_test() {
        Some(6) => println!("exception path: guarded UD2 raised #UD, recovered"),
        other => exit::fail(format_args!(
            "exception path self-test: vector {other:?}, expected Some(6)"
        )),
    }

    let preset = vmx_arch::preset_then_nop();
    if vmx_core::instruction::written_by_vmx_instruction(preset) {
        exit::fail(format_args!(
            "flags preset: RFLAGS {preset:#x} after a preset NOP looks like a VMX outcome"
        ));
    }
    println!(
        "flags preset: RFLAGS {preset:#x} after a preset NOP is no VMX outcome; every VMX instruction's flags are checked"
    );

    let rsdp = info
        .rsdp()
        .unwrap_or_else(|| exit::fail(format_args!("no ACPI RSDP in the boot information")));
    let madt = acpi::read_madt(rsdp).unwrap_or_else(|error| exit::fail(format_args!("{error}")));
    println!("MADT: local APIC IDs {:?}", madt.apic_ids());
    let mut processors =
        Processors::start(&madt, info).unwrap_or_else(|error| exit::fail(format_args!("{error}")));
    println!("processors: {} online", processors.count());
    check_processors(&mut processors);
    scenario.run(&mut processors)
}

/// Checks that work sent to each processor runs there: the local APIC ID it
/// sees is the one the MADT gives for that processor.
fn check_processors(processors: &mut Processors) {
    let lapic = processors.lapic();
    for index in 0..processors.count() {
        let expected = processors.apic_id(index);
        let mut seen = None;
        if processors
            .run_on(index, &mut || seen = Some(lapic.id()))
            .is_err()
            || seen != expected
        {
            exit::fail(format_args!(
                "work for processor {index} (APIC ID {expected:?}) ran on APIC ID {seen:?}"
            ));
        }
    }
    println!("run_on reaches every processor");
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // One line: PanicInfo's own Display puts the message on a second line,
    // which the runner would not read as part of the result.
    match info.location() {
        Some(location) => exit::fail(format_args!("panic at {location}: {}", info.message())),
        None => exit::fail(format_args!("panic: {}", info.message())),
    }
}
