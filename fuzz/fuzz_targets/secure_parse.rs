//! Every parser of the secure channel at once: `prattle::net::secure::fuzz_parse` (datagram
//! framing, known-peers file, hex keys, codes, identities, the replay window, and an endpoint
//! in both modes fed the datagram from a dialled peer and from a stranger).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prattle::net::secure::fuzz_parse(data);
});
