#![no_main]

use libfuzzer_sys::fuzz_target;

// Both decoders, typed parsing of every message, and the session machine
// (audit-only: forwards exactly what it consumed; with blocking and
// rewriting hooks: never panics).
fuzz_target!(|data: &[u8]| {
    postern_l7_pg::fuzzing::session(data);
});
