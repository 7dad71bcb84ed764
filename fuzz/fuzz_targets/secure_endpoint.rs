//! A `SecureEndpoint` fed a sequence of datagrams from a few source addresses, with its
//! timers run on a virtual clock: see `prattle_fuzz::EndpointDriver` for the input format.
//! The seeds are recorded handshakes with a real peer, which replay exactly because the
//! endpoint's randomness is seeded, so mutations start from established sessions too.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use prattle::net::secure::{MAX_PEERS, MAX_PENDING};
use prattle_fuzz::{EndpointDriver, Records};

fuzz_target!(|data: &[u8]| {
    let Some((&config, rest)) = data.split_first() else {
        return;
    };
    let (mut d, _) = EndpointDriver::new(config, Instant::now());
    for (ctl, body) in Records::new(rest) {
        let _ = d.step(ctl, body);
        let s = d.endpoint().stats();
        assert!(s.peers <= MAX_PEERS, "{} peers", s.peers);
        assert!(s.pending_handshakes <= MAX_PENDING, "{} pending", s.pending_handshakes);
    }
});
