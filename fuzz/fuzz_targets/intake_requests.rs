//! Every request message of `motcua.intake.v1`, decoded with prost and put
//! through intake's checks (`intake::fuzzing`): the first byte picks the
//! RPC, the rest is the message.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, message)) = data.split_first() else {
        return;
    };
    let rpcs = intake::fuzzing::RPCS;
    intake::fuzzing::check_request(rpcs[usize::from(pick) % rpcs.len()], message);
});
