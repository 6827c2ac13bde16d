//! `cargo xtask ci`: every check and test, in the order CI runs them.
//! Stops at the first failure and says which step failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::setup::TARGETS;

/// How long each fuzz target runs in CI (the long run is in the docs).
const FUZZ_SECONDS: &str = "20";

pub fn run(args: &[String]) -> Result<()> {
    let setup = match args {
        [] => true,
        [flag] if flag == "--no-setup" => false,
        _ => bail!("usage: cargo xtask ci [--no-setup]"),
    };
    if setup {
        crate::setup::run().context("installing prerequisites (skip with --no-setup)")?;
    }
    let root = workspace_root();
    let started = Instant::now();
    let cargo = || {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command.current_dir(&root);
        command
    };

    step("format", cargo().args(["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step("tests", cargo().args(["test", "--workspace"]))?;
    step(
        "docs",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    for target in TARGETS {
        step(
            &format!("no_std crates for {target}"),
            cargo().args([
                "build",
                "-p",
                "vmx-core",
                "-p",
                "vmx-arch",
                "-p",
                "vmx-ioctl",
                "--target",
                target,
            ]),
        )?;
    }
    step(
        "vmx-core's test aids for other crates (mock, sim)",
        cargo().args(["build", "-p", "vmx-core", "--features", "mock,sim"]),
    )?;
    step(
        "vmx-arch with fault recovery for x86_64-unknown-none",
        cargo().args([
            "build",
            "-p",
            "vmx-arch",
            "--features",
            "fault-recovery",
            "--target",
            "x86_64-unknown-none",
        ]),
    )?;
    step(
        "user-app for Windows",
        cargo().args([
            "check",
            "-p",
            "user-app",
            "--target",
            "x86_64-pc-windows-msvc",
        ]),
    )?;
    wine_glue(&root)?;
    crate::e2e::run(&[]).context("step `end-to-end suite` failed")?;
    eprintln!("\n== Wine suite\n+ cargo xtask wine");
    let wine = Instant::now();
    crate::wine::run(&[]).context("step `Wine suite` failed")?;
    eprintln!("== Wine suite: ok in {:.1?}", wine.elapsed());
    fuzz(&root)?;
    book(&root)?;
    eprintln!("\nci: every step passed in {:.0?}", started.elapsed());
    Ok(())
}

/// nt-driver's glue against the wdk-sys names generated from mingw-w64's
/// headers (wine-driver/): formatted, checked, and linted with warnings as
/// errors for x86_64-pc-windows-msvc, with the Wine-only crates.
fn wine_glue(root: &Path) -> Result<()> {
    let dir = root.join("wine-driver");
    let msvc = [
        "--target",
        "x86_64-pc-windows-msvc",
        "-p",
        "nt-driver-wine-test-no-sddl",
        "-p",
        "wine-substitutes",
        "-p",
        "wdk-sys",
        "-p",
        "wdk-alloc",
        "-p",
        "wdk-panic",
    ];
    step(
        "wine-driver format",
        crate::wine::cargo(&dir).args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "nt-driver's glue against the generated bindings: check",
        crate::wine::cargo(&dir).arg("check").args(msvc),
    )?;
    step(
        "nt-driver's glue against the generated bindings: clippy",
        crate::wine::cargo(&dir)
            .arg("clippy")
            .args(msvc)
            .args(["--", "-D", "warnings"]),
    )?;
    step(
        "wine-driver's Win32 client: clippy",
        crate::wine::cargo(&dir).args([
            "clippy",
            "--target",
            "x86_64-pc-windows-gnu",
            "-p",
            "wine-client",
            "--",
            "-D",
            "warnings",
        ]),
    )
}

/// The fuzz targets of every cargo-fuzz crate, each for a short run.
fn fuzz(root: &Path) -> Result<()> {
    for dir in [root.join("fuzz"), root.join("nt-driver/fuzz")] {
        if !dir.join("Cargo.toml").exists() {
            continue;
        }
        let list = Command::new("cargo")
            .args(["+nightly", "fuzz", "list"])
            .current_dir(&dir)
            .output()
            .context("cargo fuzz list")?;
        if !list.status.success() {
            bail!("cargo fuzz list failed in {}", dir.display());
        }
        for target in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            step(
                &format!("fuzz {target} for {FUZZ_SECONDS} s"),
                Command::new("cargo")
                    .args([
                        "+nightly",
                        "fuzz",
                        "run",
                        target,
                        "--",
                        &format!("-max_total_time={FUZZ_SECONDS}"),
                    ])
                    .env_remove("RUSTFLAGS")
                    .current_dir(&dir),
            )?;
        }
    }
    Ok(())
}

/// `mdbook build` with warnings as errors: mdbook has no such switch, so
/// any WARN or ERROR line of its log fails the step.
fn book(root: &Path) -> Result<()> {
    eprintln!("\n== book\n+ mdbook build docs");
    let output = Command::new("mdbook")
        .args(["build", "docs"])
        .current_dir(root)
        .output()
        .context("step `book`: cannot run mdbook (cargo xtask setup installs it)")?;
    let log = String::from_utf8_lossy(&output.stderr);
    eprint!("{log}");
    if !output.status.success()
        || log
            .lines()
            .any(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        bail!("step `book` failed: mdbook reported warnings or errors");
    }
    eprintln!("== book: ok");
    Ok(())
}

fn step(name: &str, command: &mut Command) -> Result<()> {
    eprintln!("\n== {name}\n+ {command:?}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("step `{name}`: cannot run {command:?}"))?;
    if !status.success() {
        bail!("step `{name}` failed ({status})");
    }
    eprintln!("== {name}: ok in {:.1?}", started.elapsed());
    Ok(())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
