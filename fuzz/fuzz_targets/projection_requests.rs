//! Every request message the projection decodes (`motcua.reports.v1`,
//! `motcua.admin.v1`): the first byte picks the message, the rest is
//! decoded with prost; a decoded message must encode and decode to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use proto::{admin::v1 as admin, reports::v1 as reports};

/// Decodes `bytes` as `M`; what decodes must survive a round trip.
fn round_trip<M: Message + Default + PartialEq>(bytes: &[u8]) {
    let Ok(message) = M::decode(bytes) else {
        return;
    };
    let again = M::decode(message.encode_to_vec().as_slice());
    assert!(
        again.as_ref() == Ok(&message),
        "a decoded message did not round-trip"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    match pick % 11 {
        0 => round_trip::<reports::StatisticsRequest>(bytes),
        1 => round_trip::<reports::YearlySeriesRequest>(bytes),
        2 => round_trip::<reports::ListUnitsRequest>(bytes),
        3 => round_trip::<reports::ProcedureCountsRequest>(bytes),
        4 => round_trip::<reports::ListOverdueRequest>(bytes),
        5 => round_trip::<reports::ListDueSoonRequest>(bytes),
        6 => round_trip::<reports::WatchLateRequest>(bytes),
        7 => round_trip::<reports::StartRebuildRequest>(bytes),
        8 => round_trip::<reports::GetRebuildRequest>(bytes),
        9 => round_trip::<admin::ListParkedRequest>(bytes),
        _ => round_trip::<admin::ReplayParkedRequest>(bytes),
    }
});
