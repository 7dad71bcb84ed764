//! `Message::decode` on arbitrary datagrams: never panics, and whatever it accepts encodes
//! again and decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prattle::proto::message::MAX_DATAGRAM;
use prattle::proto::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_DATAGRAM);
    let bytes = msg.encode().expect("a decoded message encodes");
    // unused flag bits are dropped, so compare messages, not bytes
    assert!(bytes.len() <= data.len());
    assert_eq!(Message::decode(&bytes).as_ref(), Ok(&msg));
});
