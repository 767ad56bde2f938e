//! Events held behind a gap in their stream's versions, applied once the
//! gap is filled.

use anyhow::Context as _;

use super::{Applied, Changes};

/// Applies the queued events that now follow the dossier's version; drops
/// queued duplicates. Records which stored ones left the queue.
pub(crate) fn release(
    changes: &mut Changes,
    dossier_id: &str,
    queue: &mut Vec<(i64, Vec<u8>, bool)>,
    released: &mut Vec<(String, i64)>,
) -> anyhow::Result<u64> {
    let mut applied = 0;
    loop {
        let current = changes.version_of(dossier_id);
        let mut progressed = false;
        let mut i = 0;
        while i < queue.len() {
            let version = queue[i].0;
            if version <= current + 1 {
                let (version, payload, stored) = queue.swap_remove(i);
                if stored {
                    released.push((dossier_id.to_owned(), version));
                }
                if version == current + 1 {
                    let event = bus::decode_event(&payload).context("decode a held event")?;
                    let row = changes.rows.remove(dossier_id);
                    if changes.apply(row, &event) == Applied::Applied {
                        applied += 1;
                    }
                    progressed = true;
                    break;
                }
            } else {
                i += 1;
            }
        }
        if !progressed {
            return Ok(applied);
        }
    }
}
