//! Generates wdk-sys 0.5.2's three binding files from mingw-w64's DDK
//! headers, with the settings of wdk-build 0.6.0's `Builder::wdk_default`
//! for a WDM driver on amd64, as wdk-sys's own build script splits them:
//!
//! - `types.rs`: every type (`wdk_sys::*`);
//! - `constants.rs`: every constant (`wdk_sys::*`);
//! - `ntddk.rs`: every function (`wdk_sys::ntddk::*`).
//!
//! Where mingw-w64's headers differ from the WDK's, this script handles
//! exactly that difference, each one marked `mingw-w64:` below; the
//! crate's `lib.rs` adds what the headers lack (`ExAllocatePool2`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use bindgen::callbacks::{IntKind, ParseCallbacks};
use bindgen::{CodegenConfig, EnumVariation, RustEdition, RustTarget};

/// Where Debian's mingw-w64-x86-64-dev puts the headers; overridable for
/// another layout.
const DEFAULT_MINGW_INCLUDE: &str = "/usr/x86_64-w64-mingw32/include";

/// wdk-build's headers for a WDM driver (`Config::base_headers`).
const HEADERS: &[&str] = &["ntifs.h", "ntddk.h", "ntstrsafe.h"];

#[derive(Debug)]
struct StatusAsNtStatus;

impl ParseCallbacks for StatusAsNtStatus {
    /// mingw-w64: `STATUS_*` are `((NTSTATUS)0xC0000001L)` cast macros in
    /// ntstatus.h, which bindgen evaluates only with the clang macro
    /// fallback, and then as a plain integer. wdk-sys 0.5.2 types them
    /// NTSTATUS (its constants.rs); so does this.
    fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
        name.starts_with("STATUS_").then_some(IntKind::Custom {
            name: "NTSTATUS",
            is_signed: true,
        })
    }
}

/// clang's own headers (`mm_malloc.h`, `stddef.h`, ...), which mingw-w64's
/// include. wdk-build turns off bindgen's include-path detection (it would
/// add the host's /usr/include here too), so the folder is named: the one
/// `clang -print-resource-dir` names, else the newest of Debian's
/// libclang-common folders.
fn clang_resource_include() -> PathBuf {
    if let Ok(dir) = env::var("CLANG_RESOURCE_INCLUDE") {
        return PathBuf::from(dir);
    }
    let printed = std::process::Command::new("clang")
        .arg("-print-resource-dir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("include"));
    if let Some(dir) = printed.filter(|d| d.join("stddef.h").exists()) {
        return dir;
    }
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
        .flat_map(|e| {
            fs::read_dir(e.path().join("lib/clang"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path().join("include"))
        .filter(|d| d.join("stddef.h").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "no clang resource headers (apt-get install libclang-dev, or set CLANG_RESOURCE_INCLUDE)",
    )
}

fn builder(input: &Path, include: &Path, resource: &Path) -> bindgen::Builder {
    let ddk = include.join("ddk");
    bindgen::Builder::default()
        // A file, not `header_contents`: the clang macro fallback (below)
        // precompiles the input, which it can only do for files.
        .header(input.display().to_string())
        .use_core()
        .derive_default(true)
        .generate_cstr(true)
        .detect_include_paths(false)
        .clang_arg("-fno-builtin")
        // mingw-w64: parsed for the mingw target. With an msvc target,
        // clang 14's own mmintrin.h fails inside mingw-w64's intrin.h.
        .clang_arg("--target=x86_64-w64-mingw32")
        .clang_arg(format!("--include-directory={}", ddk.display()))
        .clang_arg(format!("--include-directory={}", include.display()))
        .clang_arg(format!("-isystem{}", resource.display()))
        // wdk-build's definitions for a WDM driver on amd64, then the
        // target Windows version: wdk-build defines none (the WDK's
        // sdkddkver.h defaults to its newest Windows), mingw-w64's
        // sdkddkver.h defaults to an older one, so Windows 10 is named here.
        .clang_args([
            "--define-macro=_WIN64",
            "--define-macro=_AMD64_",
            "--define-macro=AMD64",
            "--define-macro=_KERNEL_MODE",
            "--define-macro=NTDDI_VERSION=0x0A00000C",
            "--define-macro=_WIN32_WINNT=0x0A00",
        ])
        // wdk-build's compiler flags (`wdk_bindgen_compiler_flags`), less
        // -fms-compatibility and -fdelayed-template-parsing (C++ only or
        // rejected by mingw-w64's C headers).
        .clang_args([
            "-fms-extensions",
            "--warn-=no-nonportable-include-path",
            "--warn-=no-pragma-pack",
            "--warn-=no-ignored-attributes",
            "--warn-=no-ignored-pragma-intrinsic",
            "--warn-=no-visibility",
            "--warn-=no-switch",
            "--warn-=no-comment",
            "--warn-=no-deprecated-declarations",
            "--warn-=no-invalid-token-paste",
            "--warn-=no-microsoft",
        ])
        // wdk-build's blocklist: the deprecated pool allocators.
        .blocklist_item("ExAllocatePoolWithTag")
        .blocklist_item("ExAllocatePoolWithQuotaTag")
        .blocklist_item("ExAllocatePoolWithTagPriority")
        .blocklist_item("ExAllocatePool")
        .opaque_type("_KGDTENTRY64")
        .opaque_type("_KIDTENTRY64")
        .blocklist_item(".*MCG_CAP(?:__bindgen.*)?")
        .blocklist_item(".*WHEA_XPF_MCA_SECTION")
        .must_use_type("NTSTATUS")
        .must_use_type("HRESULT")
        .default_enum_style(EnumVariation::ModuleConsts)
        .parse_callbacks(Box::new(StatusAsNtStatus))
        .formatter(bindgen::Formatter::Prettyplease)
        .rust_target(RustTarget::stable(85, 0).expect("bindgen knows Rust 1.85"))
        .rust_edition(RustEdition::Edition2024)
}

/// mingw-w64: under the mingw target clang gives a C enum with no negative
/// value the type `unsigned int`; the MSVC ABI, which wdk-sys is generated
/// for, always gives `int`. So every `ModuleConsts` enum module's `Type` is
/// retyped `c_int`, as wdk-sys has it, when all its values fit (an enum
/// with a value above `i32::MAX` keeps its type: MSVC would wrap it).
fn enums_as_msvc(text: &str) -> String {
    const UNSIGNED: &str = "    pub type Type = ::core::ffi::c_uint;";
    let mut out = String::with_capacity(text.len());
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line == UNSIGNED && i > 0 && lines[i - 1].starts_with("pub mod ") {
            let body = lines[i + 1..].iter().take_while(|l| **l != "}");
            let fits = body.clone().all(|l| {
                l.trim_start()
                    .strip_prefix("pub const ")
                    .and_then(|rest| rest.split(" = ").nth(1))
                    .map(|value| value.trim_end_matches(';'))
                    .and_then(|value| value.parse::<i64>().ok())
                    .is_some_and(|value| i32::try_from(value).is_ok())
            });
            if fits {
                out.push_str("    pub type Type = ::core::ffi::c_int;\n");
                i += 1;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

fn generate(include: &Path, resource: &Path, out: &Path, name: &str, config: CodegenConfig) {
    let input = out.join("wdk-input.h");
    let header: String = HEADERS
        .iter()
        .map(|h| format!("#include <{h}>\n"))
        .collect();
    fs::write(&input, header).expect("OUT_DIR is writable");
    let mut builder = builder(&input, include, resource).with_codegen_config(config);
    if config.contains(CodegenConfig::VARS) {
        // mingw-w64: the `STATUS_*` cast macros (see StatusAsNtStatus).
        // Only constants need it, and it is most of a run's time.
        builder = builder
            .clang_macro_fallback()
            .clang_macro_fallback_build_dir(out);
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over {}: {e}", include.display()));
    let text = enums_as_msvc(&bindings.to_string());
    fs::write(out.join(name), text).expect("OUT_DIR is writable");
}

fn main() {
    println!("cargo::rerun-if-env-changed=MINGW_INCLUDE");
    let include = PathBuf::from(
        env::var("MINGW_INCLUDE").unwrap_or_else(|_| DEFAULT_MINGW_INCLUDE.to_owned()),
    );
    assert!(
        include.join("ddk/ntddk.h").exists(),
        "no mingw-w64 DDK headers in {} (apt-get install mingw-w64-x86-64-dev, or set \
         MINGW_INCLUDE)",
        include.display()
    );
    for header in HEADERS {
        println!(
            "cargo::rerun-if-changed={}",
            include.join("ddk").join(header).display()
        );
    }
    // The kernel's import library, as wdk-sys links the WDK's ntoskrnl.lib:
    // mingw-w64's, by its file name (lld-link would look for ntoskrnl.lib).
    println!("cargo::rerun-if-env-changed=MINGW_LIB");
    let lib = env::var("MINGW_LIB").map_or_else(|_| include.with_file_name("lib"), PathBuf::from);
    assert!(
        lib.join("libntoskrnl.a").exists(),
        "no libntoskrnl.a in {} (apt-get install mingw-w64-x86-64-dev, or set MINGW_LIB)",
        lib.display()
    );
    println!("cargo::rustc-link-search=native={}", lib.display());
    println!("cargo::rustc-link-lib=dylib:+verbatim=libntoskrnl.a");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let resource = clang_resource_include();
    println!("cargo::rerun-if-env-changed=CLANG_RESOURCE_INCLUDE");
    generate(&include, &resource, &out, "types.rs", CodegenConfig::TYPES);
    generate(
        &include,
        &resource,
        &out,
        "constants.rs",
        CodegenConfig::VARS,
    );
    generate(
        &include,
        &resource,
        &out,
        "ntddk.rs",
        (CodegenConfig::TYPES | CodegenConfig::VARS).complement(),
    );
}
