//! The `vmx-dump/1` parser on any input: no panic; and whatever it accepts
//! prints back to a dump that parses to the same value and replays without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use user_app::dump::Dump;

fuzz_target!(|data: &[u8]| {
    match Dump::parse(data) {
        Ok(dump) => {
            let again = Dump::parse(dump.to_json().as_bytes()).expect("a printed dump parses");
            assert_eq!(again, dump);
            let report = user_app::diagnose_dump(&dump);
            let _ = report.to_text();
            let _ = report.to_json();
        }
        Err(e) => assert!(!e.path.is_empty() && !e.message.is_empty()),
    }
});
