//! `cargo xtask setup`: installs what the checks need on a fresh machine
//! (Debian-like, as root): the emulators and ISO tools of the end-to-end
//! suite, the cross targets, a nightly toolchain for cargo-fuzz, and the
//! cargo tools. Each step is skipped when its result is already there.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages: Bochs (VT-x emulation) with its BIOS and VGA ROMs,
/// SeaBIOS (firmware that leaves IA32_FEATURE_CONTROL unlocked), GRUB and
/// the ISO tools, QEMU (the machine without VT-x); for `cargo xtask wine`:
/// Wine (the kernel that loads the driver), mingw-w64 (the DDK headers and
/// libntoskrnl.a, and the linker of the Windows programs) and libclang
/// (for bindgen).
const APT_PACKAGES: &[&str] = &[
    "bochs",
    "bochs-term",
    "bochsbios",
    "vgabios",
    "seabios",
    "grub-pc-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "qemu-system-x86",
    "wine",
    "wine64",
    "mingw-w64-x86-64-dev",
    "gcc-mingw-w64-x86-64",
    "binutils-mingw-w64-x86-64",
    "libclang-dev",
];

/// Targets the no_std crates and the Windows front ends are built for.
pub const TARGETS: &[&str] = &["x86_64-unknown-none", "x86_64-pc-windows-msvc"];

/// Further targets: the Windows programs that `cargo xtask wine` runs
/// (vmx-check.exe and the raw client, linked by mingw-w64).
const OTHER_TARGETS: &[&str] = &["x86_64-pc-windows-gnu"];

/// Cargo tools: (binary, crate, extra `cargo install` arguments).
const CARGO_TOOLS: &[(&str, &str, &[&str])] = &[
    ("cargo-fuzz", "cargo-fuzz", &[]),
    // CI needs only the renderer: no server, no file watcher, and no search
    // index (its HTML sanitiser is much of mdbook's build time).
    ("mdbook", "mdbook", &["--no-default-features"]),
];

pub fn run() -> Result<()> {
    apt()?;
    rustup()?;
    cargo_tools()
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn status(command: &mut Command) -> Result<()> {
    eprintln!("+ {command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !has("apt-get") {
        bail!(
            "install these packages (no apt-get here): {}",
            missing.join(" ")
        );
    }
    status(Command::new("apt-get").arg("update").arg("-qq"))?;
    status(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )
}

fn rustup() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    let missing: Vec<&str> = TARGETS
        .iter()
        .chain(OTHER_TARGETS)
        .copied()
        .filter(|t| !installed.lines().any(|l| l == *t))
        .collect();
    if !missing.is_empty() {
        status(
            Command::new("rustup")
                .args(["target", "add"])
                .args(&missing),
        )?;
    }
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()?;
    if !String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    Ok(())
}

fn cargo_tools() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (binary, krate, extra) in CARGO_TOOLS {
        if !has(binary) {
            status(
                Command::new(&cargo)
                    .args(["install", "--locked", krate])
                    .args(*extra),
            )?;
        }
    }
    Ok(())
}
