//! An object store in memory, for unit tests that need a repository, not a plugin.

pub use sealback_repo::memory::MemoryStore;
