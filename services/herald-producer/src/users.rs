//! The user directory: who may send and receive notifications.

use std::collections::HashMap;
use std::path::Path;

use herald_model::{User, UserId};

/// Why a users file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("reading users file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing users file {path}: expected a JSON array of {{\"id\": <user id>, \"name\": <string>}}: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("users file {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// Users by id.
#[derive(Debug, Clone)]
pub struct Directory {
    users: HashMap<UserId, User>,
}

impl Directory {
    /// A directory of the given users; ids must be valid and unique, each with a non-empty name.
    pub fn new(users: Vec<User>) -> Result<Self, String> {
        let mut by_id = HashMap::with_capacity(users.len());
        for user in users {
            if user.id == UserId::from(0) {
                return Err(format!("user id 0 is not allowed: {}", UserId::RULE_TEXT));
            }
            if user.name.as_deref().is_none_or(|name| name.trim().is_empty()) {
                return Err(format!("user {} has no name", user.id));
            }
            let id = user.id.clone();
            if by_id.insert(id.clone(), user).is_some() {
                return Err(format!("user id {id} appears more than once"));
            }
        }
        if by_id.is_empty() {
            return Err("the directory has no users".into());
        }
        Ok(Self { users: by_id })
    }

    /// Loads a JSON array of users from `path`.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let shown = path.display().to_string();
        let raw = std::fs::read(path).map_err(|source| DirectoryError::Read { path: shown.clone(), source })?;
        let users: Vec<User> =
            serde_json::from_slice(&raw).map_err(|source| DirectoryError::Parse { path: shown.clone(), source })?;
        Self::new(users).map_err(|problem| DirectoryError::Invalid { path: shown, problem })
    }

    pub fn get(&self, id: &UserId) -> Option<&User> {
        self.users.get(id)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn loads_a_users_file() {
        let f = write(r#"[{"id":1,"name":"Emma"},{"id":42,"name":"Zoe"},{"id":"alice@example.com","name":"Alice"}]"#);
        let d = Directory::load(f.path()).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.get(&UserId::parse("alice@example.com").unwrap()).unwrap().name.as_deref(), Some("Alice"));
        assert_eq!(d.get(&UserId::from(42)).unwrap().name.as_deref(), Some("Zoe"));
        assert!(d.get(&UserId::from(2)).is_none());
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        for (content, expect) in [
            ("not json", "expected a JSON array"),
            (r#"[{"id":-1,"name":"x"}]"#, "expected a JSON array"),
            (r#"[{"id":0,"name":"x"}]"#, "expected a JSON array"),
            (r#"[{"id":"02","name":"x"}]"#, "expected a JSON array"),
            (r#"[{"id":"a b","name":"x"}]"#, "expected a JSON array"),
            (r#"[{"id":1,"name":" "}]"#, "no name"),
            (r#"[{"id":1}]"#, "no name"),
            (r#"[{"id":"1","name":"a"},{"id":1,"name":"b"}]"#, "more than once"),
            (r#"[{"id":1,"name":"a"},{"id":1,"name":"b"}]"#, "more than once"),
            ("[]", "no users"),
        ] {
            let err = Directory::load(write(content).path()).unwrap_err().to_string();
            assert!(err.contains(expect), "{content}: {err}");
        }
        let err = Directory::load(Path::new("/nonexistent/users.json")).unwrap_err().to_string();
        assert!(err.contains("reading users file /nonexistent/users.json"), "{err}");
    }
}
