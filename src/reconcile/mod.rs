//! The pure reconciler: desired and observed state in, a plan out.
