//! An event as the projection receives it from the stream:
//! `bus::decode_event`, then folded into a dossier as the first event and
//! as a later one (`domain::Dossier::apply`). A decoded event must encode
//! (`bus::encode_event`) and decode to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = bus::decode_event(data) else {
        return;
    };
    let again = bus::decode_event(&bus::encode_event(&event));
    assert!(
        again.as_ref().ok() == Some(&event),
        "{again:?} is not {event:?}"
    );
    if let Ok(opened) = domain::Dossier::apply(None, &event) {
        let mut next = event.clone();
        next.version = opened.version.saturating_add(1);
        let _ = domain::Dossier::apply(Some(opened), &next);
    }
});
