#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    postern_gateway::identity::jwt::fuzz_token(data);
});
