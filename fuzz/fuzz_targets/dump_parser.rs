//! The `vmx-dump/1` parser on any input: no panic; whatever it accepts
//! prints back to a dump that parses to the same value, replays without
//! panicking, and reports as text without a raw control character and as
//! JSON with one object per processor and the same verdicts.
//!
//! Each input is also tried inside a dump with the Linux keys, their
//! values taken from the input, so that the keys and vmx-core's
//! `linux_facts` decisions are reached without a dictionary or corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;
use user_app::dump::Dump;

fn check(data: &[u8]) {
    match Dump::parse(data) {
        Ok(dump) => {
            let again = Dump::parse(dump.to_json().as_bytes()).expect("a printed dump parses");
            assert_eq!(again, dump);
            let report = user_app::diagnose_dump(&dump);
            let text = report.to_text();
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "a control character reached the text report: {text:?}"
            );
            let json = report.to_json();
            let cpus = json["cpus"].as_array().expect("cpus is a list");
            assert_eq!(cpus.len(), dump.cpus.len());
            for (object, cpu) in cpus.iter().zip(&report.cpus) {
                assert_eq!(object["verdict"], cpu.verdict().name());
            }
            assert_eq!(json["verdict"], report.verdict().name());
        }
        Err(e) => assert!(!e.path.is_empty() && !e.message.is_empty()),
    }
}

/// A dump of one Skylake-X processor (VMX set; IA32_FEATURE_CONTROL, CR4
/// and the Linux facts chosen by the input's first bytes; the flags lines
/// and the source are the rest of the input).
fn with_linux_keys(data: &[u8]) -> Option<Vec<u8>> {
    let (&[choice, fc, cr4], rest) = data.split_first_chunk::<3>()?;
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '|');
    let (flags, vmx_flags, source) = (parts.next()?, parts.next(), parts.next());
    let string = |s: &str| serde_json::Value::from(s).to_string();
    let kvm = ["\"loaded\"", "\"not-loaded\"", "\"other\"", "7"][usize::from(choice & 3)];
    let virt = ["", r#", "kvm_enable_virt_at_load": "Y""#, r#", "kvm_enable_virt_at_load": "N""#]
        [usize::from(choice >> 2 & 3) % 3];
    let msrs = match fc % 4 {
        0 => "{}".to_owned(),
        1 => r#"{"0x3a": null}"#.to_owned(),
        _ => format!(
            r#"{{"0x3a": "{:#x}", "0x480": "0xd810000000002b", "0x486": "0x80000021", "0x487": "0xffffffff", "0x488": "0x2000", "0x489": "0x3727ff"}}"#,
            fc >> 2
        ),
    };
    let cr4 = if cr4 & 1 == 0 { String::new() } else { format!(r#", "cr4": "{:#x}""#, u64::from(cr4) << 7) };
    let vmx_flags = vmx_flags.map_or(String::new(), |v| format!(r#", "cpuinfo_vmx_flags": {}"#, string(v)));
    Some(
        format!(
            r#"{{"format": "vmx-dump/1", "source": {}, "linux": {{"kvm_intel": {kvm}, "kvm_intel_nested": "Y"{virt}}},
              "cpus": [{{"cpu": 0, "cpuid": [
                {{"leaf": "0x0", "subleaf": "0x0", "eax": "0x16", "ebx": "0x756e6547", "ecx": "0x6c65746e", "edx": "0x49656e69"}},
                {{"leaf": "0x1", "subleaf": "0x0", "eax": "0x50654", "ebx": "0x0", "ecx": "0x77faf3bf", "edx": "0xbfebfbff"}}],
                "msrs": {msrs}{cr4}, "linux": {{"cpuinfo_flags": {}{vmx_flags}}}}}]}}"#,
            string(source.unwrap_or("")),
            string(flags),
        )
        .into_bytes(),
    )
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(dump) = with_linux_keys(data) {
        check(&dump);
    }
});
