//! Ready-made normalising expressions ([`Expression`](super::Expression)s), applied to a value
//! before it is hashed — on write and on query alike, so `find by email` matches however the
//! address was typed. Any `fn(&str) -> String` (or non-capturing closure) works too.
//!
//! ```
//! use kms_fields::blind_index::normalize;
//! assert_eq!(normalize::lowercase("Ada@Example.ORG"), "ada@example.org");
//! assert_eq!(normalize::trim_lowercase("  ÉCOLE@Example.ORG\n"), "école@example.org");
//! ```
//!
//! Compatibility with gem expressions: [`lowercase`] is Rust's full Unicode `to_lowercase`
//! (what Ruby's `downcase` and Python's `lower` do for practically all text) and [`trim`] is
//! Ruby's `strip`, so `expression: ->(v) { v.strip.downcase }` in the gem and
//! [`trim_lowercase`] here give the same indexes for the same input.

/// The characters Ruby's `String#strip` removes: NUL, `\t`, `\n`, `\v`, `\f`, `\r` and space.
const RUBY_WHITESPACE: [char; 7] = ['\0', '\t', '\n', '\u{0B}', '\u{0C}', '\r', ' '];

/// Unicode lower case (`str::to_lowercase`; Ruby `downcase`, Python `lower`).
pub fn lowercase(value: &str) -> String {
    value.to_lowercase()
}

/// Remove leading and trailing ASCII whitespace and NUL (Ruby `strip`).
pub fn trim(value: &str) -> String {
    value.trim_matches(RUBY_WHITESPACE.as_slice()).to_owned()
}

/// [`trim`], then [`lowercase`] (Ruby `v.strip.downcase`): the usual choice for emails.
pub fn trim_lowercase(value: &str) -> String {
    value
        .trim_matches(RUBY_WHITESPACE.as_slice())
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_strip_set() {
        assert_eq!(trim("\0\t\n\u{0B}\u{0C}\r x y \r\n"), "x y");
        // non-ASCII spaces are kept, as Ruby keeps them
        assert_eq!(trim("\u{00A0}x"), "\u{00A0}x");
        assert_eq!(trim_lowercase(" ÀB "), "àb");
        assert_eq!(lowercase("ΣΑΣ"), "σας");
    }
}
