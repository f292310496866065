//! Percent-encoding outside RFC 3986's unreserved set (`A-Z a-z 0-9 - . _ ~`), with the
//! `percent-encoding` crate: the one encoder for OAuth parameters and client credentials
//! (`auth::login::oauth`) and for group names in the `csv` identity header (`auth::identity`),
//! where it is what keeps a group name holding `,` from forging a second group.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Every byte but the unreserved ones is encoded (upper-case hex).
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `s` with every byte outside the unreserved set written as `%XX`.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_unreserved_bytes_pass_and_hex_is_upper_case() {
        assert_eq!(super::encode("a b/c?d=é,~-._"), "a%20b%2Fc%3Fd%3D%C3%A9%2C~-._");
        for b in 0u8..=127 {
            let s = (b as char).to_string();
            let plain = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            assert_eq!(super::encode(&s) == s, plain, "byte {b:#04x}");
        }
    }
}
