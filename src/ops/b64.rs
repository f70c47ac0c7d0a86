//! Standard base64 (RFC 4648, with padding) through the `base64` crate (already in the tree
//! via kube): `key#base64` secret values in the local model's hook tools, the local model's
//! agent protocol, and the grafana-dashboard relation's compressed content.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Lenient decoders: padding optional, standard or URL-safe alphabet (Juju accepts both in
/// `secret-set key#base64=...`).
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Standard alphabet, with padding (what Python's `base64.b64encode` produces).
pub fn encode(input: &[u8]) -> String {
    STANDARD.encode(input)
}

/// `None` on anything that is not base64 (ASCII whitespace is skipped).
pub fn decode(input: &str) -> Option<Vec<u8>> {
    let compact: String = input.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD_LENIENT
        .decode(&compact)
        .or_else(|_| URL_SAFE_LENIENT.decode(&compact))
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_matches_python() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let e = super::encode(s.as_bytes());
            assert_eq!(super::decode(&e).unwrap(), s.as_bytes());
        }
        assert_eq!(super::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::encode(b"fo"), "Zm8=");
        assert_eq!(super::decode("Zm8").unwrap(), b"fo");
        assert_eq!(super::decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(super::decode("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert!(super::decode("not base64!").is_none());
    }
}
