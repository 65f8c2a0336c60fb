//! The admin token and partner API keys in force.
//!
//! Each comes from `config.toml`, else the environment (already folded into
//! the config by `Config::apply_env`), else `<data_dir>/secrets.toml`, else it
//! is generated now, written there with owner-only permissions and printed
//! once — so the embedded default runs out of the box without shipping a
//! secret, and a restart keeps the same keys.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::keys::{self, KeyHash};

const FILE: &str = "secrets.toml";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    admin_token: Option<String>,
    #[serde(default)]
    partner_keys: BTreeMap<String, String>,
}

impl Stored {
    /// A stored secret is generated, so an empty one was edited in by hand;
    /// refuse it like an empty configured one (`Config::check_secrets`)
    /// rather than accept an empty key.
    fn refuse_blank(&self, path: &Path) -> Result<(), String> {
        let blank = |s: &str| s.trim().is_empty();
        let setting = if self.admin_token.as_deref().is_some_and(blank) {
            Some("admin_token".to_string())
        } else {
            self.partner_keys
                .iter()
                .find(|(_, k)| blank(k))
                .map(|(name, _)| format!("partner_keys.{name}"))
        };
        match setting {
            None => Ok(()),
            Some(setting) => Err(format!(
                "{}: {setting} is empty; remove it to have a new one generated, or set one",
                path.display()
            )),
        }
    }
}

/// Hashes of the secrets in force.
#[derive(Clone, Debug)]
pub struct Secrets {
    pub admin: KeyHash,
    pub partners: BTreeMap<String, KeyHash>,
}

impl Secrets {
    /// Resolves every secret, generating and storing the missing ones.
    /// Returns the secrets and the lines to print for newly generated ones.
    pub fn ensure(config: &Config) -> Result<(Secrets, Vec<String>), String> {
        let dir = &config.data_dir;
        let path = dir.join(FILE);
        let mut stored: Stored = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        stored.refuse_blank(&path)?;
        let mut announce = Vec::new();
        let mut changed = false;
        let admin = match &config.admin_token {
            Some(t) => t.clone(),
            None => stored
                .admin_token
                .get_or_insert_with(|| {
                    changed = true;
                    let t = keys::generate("cad_");
                    announce.push(format!("generated admin token: {t}"));
                    t
                })
                .clone(),
        };
        let mut partners = BTreeMap::new();
        for (name, p) in &config.partners {
            let key = match &p.api_key {
                Some(k) => k.clone(),
                None => stored
                    .partner_keys
                    .entry(name.clone())
                    .or_insert_with(|| {
                        changed = true;
                        let k = keys::generate("cpk_");
                        announce.push(format!("generated partner API key for {name}: {k}"));
                        k
                    })
                    .clone(),
            };
            partners.insert(name.clone(), KeyHash::of(&key));
        }
        if changed {
            write_private(
                dir,
                &path,
                &toml::to_string(&stored).map_err(|e| e.to_string())?,
            )?;
            announce.push(format!("stored in {} (owner-only)", path.display()));
        }
        Ok((
            Secrets {
                admin: KeyHash::of(&admin),
                partners,
            },
            announce,
        ))
    }
}

fn write_private(dir: &Path, path: &Path, text: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension("toml.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The admin token in plain text, for the CLI: configured (or from the
/// environment), else the one generated into the data dir, if any.
pub fn admin_token(config: &Config) -> Result<Option<String>, String> {
    if let Some(t) = &config.admin_token {
        return Ok(Some(t.clone()));
    }
    let path = config.data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: Stored =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(stored.admin_token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_secrets_are_generated_once_stored_privately_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.partners.get_mut("segment").unwrap().api_key = Some("given".into());
        let (first, said) = Secrets::ensure(&config).unwrap();
        assert!(said
            .iter()
            .any(|l| l.starts_with("generated admin token: cad_")));
        assert!(said.iter().any(|l| l.contains("for heap")));
        assert!(!said.iter().any(|l| l.contains("for segment")));
        assert!(first.partners["segment"].matches("given"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, said_again) = Secrets::ensure(&config).unwrap();
        assert!(said_again.is_empty(), "printed only once");
        assert_eq!(again.admin, first.admin);
        assert_eq!(again.partners["heap"], first.partners["heap"]);
    }

    #[test]
    fn an_empty_stored_secret_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        std::fs::write(
            dir.path().join(FILE),
            "admin_token = \"cad_x\"\n[partner_keys]\nheap = \" \"\n",
        )
        .unwrap();
        let e = Secrets::ensure(&config).unwrap_err();
        assert!(
            e.contains("secrets.toml: partner_keys.heap is empty"),
            "{e}"
        );
    }
}
