//! A reference to one key of a Secret or ConfigMap, shared by the spec's sections.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret or ConfigMap of the pipeline's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KeyRef {
    /// Name of the Secret or ConfigMap.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within it.
    #[schemars(length(min = 1))]
    pub key: String,
}
