//! Lookup codes: what the receipt slip carries so that its holder, and
//! only its holder, can look the dossier up (`DossierService.LookUpDossier`).
//!
//! A code is the HMAC-SHA256 of the dossier id under intake's secret, its
//! first 50 bits in Crockford's base32 (10 characters, no I, L, O or U to
//! misread): nothing to store, the same for every reply about a dossier,
//! and not to be guessed from the id (with the per-address rate limit in
//! front of the lookup). The secret comes from a file
//! (`--lookup-secret-file`) or, by default, is made once at random and kept
//! in the event store, so that every instance on one store prints the same
//! codes and none needs set-up.

use std::path::Path;

use anyhow::Context as _;
use ring::{
    hmac,
    rand::{SecureRandom as _, SystemRandom},
};

use crate::store::EventStore;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code: 50 bits.
const LENGTH: usize = 10;
/// Shortest secret a file may give.
const MIN_SECRET: usize = 16;

/// Makes and checks lookup codes.
#[derive(Clone)]
pub struct LookupCodes {
    key: hmac::Key,
}

impl std::fmt::Debug for LookupCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupCodes(..)")
    }
}

impl LookupCodes {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The codes of this deployment: from the secret in `file`, or from
    /// the one the store keeps (made now if it has none).
    pub async fn load(store: &EventStore, file: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(path) = file {
            let secret = std::fs::read(path)
                .with_context(|| format!("read the lookup secret {}", path.display()))?;
            let secret = secret.trim_ascii();
            anyhow::ensure!(
                secret.len() >= MIN_SECRET,
                "the lookup secret {} is shorter than {MIN_SECRET} bytes",
                path.display()
            );
            return Ok(Self::from_secret(secret));
        }
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| anyhow::anyhow!("the system's randomness failed"))?;
        let secret = store.lookup_secret(&fresh).await?;
        Ok(Self::from_secret(&secret))
    }

    /// The code printed on the slip of `dossier_id`.
    pub fn code(&self, dossier_id: &str) -> String {
        let tag = hmac::sign(&self.key, dossier_id.as_bytes());
        let bits = tag
            .as_ref()
            .iter()
            .take(8)
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        (0..LENGTH)
            .map(|i| char::from(ALPHABET[((bits >> (59 - 5 * i)) & 31) as usize]))
            .collect()
    }

    /// Whether `given` (as a citizen typed it) is the code of `dossier_id`.
    /// The comparison takes the same time wherever the codes differ.
    pub fn matches(&self, dossier_id: &str, given: &str) -> bool {
        let given = normalize(given);
        let expected = self.code(dossier_id);
        given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// A typed code in the alphabet's own letters: upper case, without spaces
/// or dashes, with the letters Crockford's base32 reads as digits mapped.
fn normalize(given: &str) -> String {
    given
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_code_is_ten_characters_of_the_alphabet_and_stable() {
        let codes = LookupCodes::from_secret(b"0123456789abcdef0123456789abcdef");
        let code = codes.code("000.00.00.H01-251203-0001");
        assert_eq!(code.len(), LENGTH);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
        assert_eq!(code, codes.code("000.00.00.H01-251203-0001"));
        assert_ne!(code, codes.code("000.00.00.H01-251203-0002"));
        let other = LookupCodes::from_secret(b"another secret, another deployment");
        assert_ne!(code, other.code("000.00.00.H01-251203-0001"));
    }

    #[test]
    fn a_code_is_accepted_as_people_type_it() {
        let codes = LookupCodes::from_secret(b"0123456789abcdef");
        let code = codes.code("HS-1");
        let typed = format!("{}-{}", &code[..5], &code[5..]).to_ascii_lowercase();
        assert!(codes.matches("HS-1", &typed));
        assert!(codes.matches("HS-1", &format!(" {code} ")));
        assert!(!codes.matches("HS-2", &code));
        assert!(!codes.matches("HS-1", &code[..9]));
        assert!(!codes.matches("HS-1", ""));
    }

    proptest! {
        /// One changed character is always refused.
        #[test]
        fn a_code_with_one_character_changed_is_refused(
            id in "[A-Z0-9.-]{1,30}",
            at in 0..LENGTH,
            with in 0..32usize,
        ) {
            let codes = LookupCodes::from_secret(b"0123456789abcdef");
            let code = codes.code(&id);
            let mut changed = code.clone().into_bytes();
            prop_assume!(changed[at] != ALPHABET[with]);
            changed[at] = ALPHABET[with];
            let changed = String::from_utf8(changed).expect("ascii");
            prop_assert!(!codes.matches(&id, &changed));
        }
    }
}
