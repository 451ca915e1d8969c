//! Where registry credentials come from (SPEC §4). Filled in by the credentials work.
