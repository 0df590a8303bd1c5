//! Cross-crate tests: native clusters on loopback and browser members in headless Chromium. The first of them arrive with the native-driver milestone (issue 4); until then this crate has no items.

#![deny(missing_docs)]
