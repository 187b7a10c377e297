//! [`Access`]: the two ways to hold a lock, the public vocabulary every layer
//! speaks.

/// Shared (read) or exclusive (write) access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Access {
    /// Shared access: any number of readers hold the lock together.
    Read,
    /// Exclusive access: one writer and nobody else.
    Write,
}

impl Access {
    /// "read" or "write", as used in messages and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
