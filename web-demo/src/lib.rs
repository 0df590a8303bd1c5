//! The live cluster dashboard served by a small native cluster, which the page joins as a browser member. Its implementation arrives with the demo milestone (issue 6); until then this crate has no items.

#![deny(missing_docs)]
