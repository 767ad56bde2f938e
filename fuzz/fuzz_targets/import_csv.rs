//! The `motcua import` file parser (`motcua::import::read_bytes`) on any
//! bytes, and each row it accepts put through intake's checks of an
//! imported row (`intake::fuzzing::check_import_row`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((rows, _rejected)) = motcua::import::read_bytes(data, "fuzz") {
        for row in rows {
            intake::fuzzing::check_import_row(row);
        }
    }
});
