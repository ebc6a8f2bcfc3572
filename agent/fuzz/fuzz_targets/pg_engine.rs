#![no_main]

use libfuzzer_sys::fuzz_target;

// The agent's Postgres engine with each test policy: guardrails, masking
// (by source column, fail-closed on computed columns, detectors) and the
// audit trail, on hostile byte streams from both sides.
fuzz_target!(|data: &[u8]| {
    postern_agent::pg::fuzzing::engine(data);
});
