//! Observed state rebuilt from the kernel, and persisted state that the kernel cannot hold.
