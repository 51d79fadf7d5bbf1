//! Decoding a policy's configuration.
//!
//! Operators write a policy's configuration as TOML or JSON; the engine turns
//! it into MessagePack (an empty map when there is none) and hands the bytes
//! to the policy's `init`, where [`decode`] turns them into the policy's
//! `Config` type.

use serde::de::DeserializeOwned;

/// Configuration of a policy that takes none. Any non-empty configuration is
/// refused, so a misplaced file does not pass silently.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Decodes MessagePack configuration bytes into `T`, with an error message
/// that names the offending field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // An empty slice is treated like an empty map, for hosts that send nothing.
    let bytes = if bytes.is_empty() { &[0x80][..] } else { bytes };
    rmp_serde::from_slice(bytes).map_err(|e| format!("invalid policy configuration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        retry_after: u32,
    }

    #[test]
    fn empty_bytes_and_empty_map_decode_to_defaults() {
        assert_eq!(decode::<Cfg>(&[]).unwrap(), Cfg { retry_after: 0 });
        assert_eq!(decode::<Cfg>(&[0x80]).unwrap(), Cfg { retry_after: 0 });
        decode::<NoConfig>(&[]).unwrap();
    }

    #[test]
    fn named_fields_decode_and_unknown_fields_are_refused() {
        // {"retry_after": 7}
        let mut ok = vec![0x81, 0xab];
        ok.extend_from_slice(b"retry_after");
        ok.push(7);
        assert_eq!(decode::<Cfg>(&ok).unwrap(), Cfg { retry_after: 7 });
        // {"typo": 1}
        let bad = [0x81, 0xa4, b't', b'y', b'p', b'o', 1];
        let err = decode::<Cfg>(&bad).unwrap_err();
        assert!(err.contains("typo"), "{err}");
        assert!(decode::<NoConfig>(&bad).is_err());
    }
}
