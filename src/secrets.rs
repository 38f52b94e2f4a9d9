//! Settings that can hold a secret: the PostgreSQL URL (its password) and the librdkafka
//! properties (`sasl.password`, `ssl.key.password`, ...).
//!
//! Each comes from a flag, an environment variable, or a file named by `NAME_FILE` — the
//! container secrets convention (Docker and Kubernetes mount a secret as a file), which also lets
//! a password hold a comma. None is ever printed: `--help` hides their environment values, their
//! `Debug` redacts, and every error about them names the flag or the file, never the value. clap
//! itself echoes a value it cannot parse, so these values parse infallibly and are checked here,
//! after clap, where the error can leave the value out.

use std::fmt;
use std::path::{Path, PathBuf};

use payment_kafka::is_sensitive_property;

/// What `Debug` and `Display` print instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// Largest secrets file read, in bytes: a URL or a properties file is a few hundred bytes, and a
/// path pointing at something else must not be read whole into memory.
pub const SECRETS_FILE_MAX_BYTES: u64 = 64 * 1024;

/// A value that is never printed; [`expose`](Self::expose) it only to hand it to the client that
/// needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// One `--kafka-property` as given, not yet split: a value clap cannot refuse, so that clap never
/// echoes it. [`KafkaProperty::parse`] splits it after clap, with an error that names no value.
#[derive(Clone, PartialEq, Eq)]
pub struct RawKafkaProperty(String);

impl From<String> for RawKafkaProperty {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for RawKafkaProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KafkaProperty::parse(&self.0) {
            Some(property) => property.fmt(f),
            None => f.write_str(REDACTED),
        }
    }
}

/// A librdkafka property, `key=value`; `Debug` redacts the value of a sensitive key.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    /// The property's name, trimmed.
    pub key: String,
    /// Its value, as given.
    pub value: String,
}

impl KafkaProperty {
    /// `key=value` with a non-empty key; `None` otherwise.
    fn parse(text: &str) -> Option<Self> {
        let (key, value) = text.split_once('=')?;
        let key = key.trim();
        (!key.is_empty()).then(|| Self { key: key.to_string(), value: value.to_string() })
    }
}

impl fmt::Debug for KafkaProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if is_sensitive_property(&self.key) { REDACTED } else { self.value.as_str() };
        write!(f, "{}={}", self.key, value)
    }
}

/// Why a secret-holding setting could not be read. No variant carries the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Both the setting and its `_FILE` form were given.
    #[error("{setting} and {setting}_FILE are both set: give one")]
    Both {
        /// The setting's environment name.
        setting: &'static str,
    },
    /// The file could not be read.
    #[error("cannot read {setting}_FILE {}: {source}", path.display())]
    Unreadable {
        /// The setting's environment name.
        setting: &'static str,
        /// The file named.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`SECRETS_FILE_MAX_BYTES`].
    #[error("{setting}_FILE {} is larger than {SECRETS_FILE_MAX_BYTES} bytes", path.display())]
    TooLarge {
        /// The setting's environment name.
        setting: &'static str,
        /// The file named.
        path: PathBuf,
    },
    /// The file or the setting is empty.
    #[error("{setting} is empty")]
    Empty {
        /// The setting's environment name.
        setting: &'static str,
    },
    /// A property is not `key=value`; `where_` says which one, by position, never by value.
    #[error("KAFKA_PROPERTIES: {where_} is not key=value with a non-empty key")]
    NotKeyValue {
        /// `property 2 of --kafka-property/KAFKA_PROPERTIES` or `line 3 of KAFKA_PROPERTIES_FILE`.
        where_: String,
    },
}

/// The PostgreSQL URL from `DATABASE_URL` or `DATABASE_URL_FILE` (whose one line is the URL).
pub fn database_url(direct: Option<&Secret>, file: Option<&Path>) -> Result<Option<Secret>, SecretsError> {
    const SETTING: &str = "DATABASE_URL";
    match (direct, file) {
        (Some(_), Some(_)) => Err(SecretsError::Both { setting: SETTING }),
        (Some(url), None) if url.expose().trim().is_empty() => Err(SecretsError::Empty { setting: SETTING }),
        (Some(url), None) => Ok(Some(url.clone())),
        (None, Some(path)) => {
            let text = read(SETTING, path)?;
            let url = text.trim();
            if url.is_empty() {
                return Err(SecretsError::Empty { setting: SETTING });
            }
            Ok(Some(Secret(url.to_string())))
        }
        (None, None) => Ok(None),
    }
}

/// The librdkafka properties: those of `KAFKA_PROPERTIES_FILE` (one `key=value` a line; blank
/// lines and lines starting with `#` are skipped, so a value may hold commas), then the flags',
/// which win.
pub fn kafka_properties(
    flags: &[RawKafkaProperty],
    file: Option<&Path>,
) -> Result<Vec<(String, String)>, SecretsError> {
    let mut properties = Vec::new();
    if let Some(path) = file {
        let text = read("KAFKA_PROPERTIES", path)?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let property = KafkaProperty::parse(line).ok_or_else(|| SecretsError::NotKeyValue {
                where_: format!("line {} of KAFKA_PROPERTIES_FILE", n + 1),
            })?;
            properties.push((property.key, property.value));
        }
    }
    for (n, raw) in flags.iter().enumerate() {
        let property = KafkaProperty::parse(&raw.0).ok_or_else(|| SecretsError::NotKeyValue {
            where_: format!("property {} of --kafka-property/KAFKA_PROPERTIES", n + 1),
        })?;
        properties.push((property.key, property.value));
    }
    Ok(properties)
}

fn read(setting: &'static str, path: &Path) -> Result<String, SecretsError> {
    let unreadable = |source| SecretsError::Unreadable { setting, path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > SECRETS_FILE_MAX_BYTES {
        return Err(SecretsError::TooLarge { setting, path: path.to_path_buf() });
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANTED: &str = "hunter2,with-a-comma";

    fn raw(text: &str) -> RawKafkaProperty {
        RawKafkaProperty(text.to_string())
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let url = Secret(format!("postgres://u:{PLANTED}@db/payments"));
        assert_eq!(format!("{url:?} {url}"), "[redacted] [redacted]");
        let properties = [raw(&format!("sasl.password={PLANTED}")), raw("security.protocol=SASL_SSL")];
        let shown = format!("{properties:?}");
        assert!(!shown.contains(PLANTED), "{shown}");
        assert!(shown.contains("security.protocol=SASL_SSL"), "non-secret values stay readable: {shown}");
    }

    #[test]
    fn a_properties_file_takes_commas_in_values_and_flags_come_last() {
        let dir = std::env::temp_dir().join(format!("secrets-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kafka.properties");
        std::fs::write(&file, format!("# managed Kafka\nsasl.password={PLANTED}\n\n sasl.username = shop\r\n"))
            .unwrap();
        let properties = kafka_properties(&[raw("client.id=a")], Some(&file)).unwrap();
        assert_eq!(
            properties,
            [
                ("sasl.password".to_string(), PLANTED.to_string()),
                ("sasl.username".to_string(), " shop".to_string()),
                ("client.id".to_string(), "a".to_string())
            ]
        );
        std::fs::write(&file, format!("sasl.password {PLANTED}\n")).unwrap();
        let error = kafka_properties(&[], Some(&file)).unwrap_err().to_string();
        assert!(error.contains("line 1 of KAFKA_PROPERTIES_FILE") && !error.contains("hunter2"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_malformed_property_is_refused_without_its_value() {
        let error = kafka_properties(&[raw("a=b"), raw(&format!("sasl.password:{PLANTED}"))], None).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("property 2") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_database_url_comes_from_one_place() {
        let dir = std::env::temp_dir().join(format!("secrets-url-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("url");
        std::fs::write(&file, "postgres://u:p@db/x\n").unwrap();
        let url = database_url(None, Some(&file)).unwrap().unwrap();
        assert_eq!(url.expose(), "postgres://u:p@db/x");
        let direct = Secret("postgres://db".into());
        assert!(matches!(database_url(Some(&direct), Some(&file)), Err(SecretsError::Both { .. })));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(database_url(None, Some(&file)), Err(SecretsError::Empty { .. })));
        assert!(matches!(database_url(None, Some(&dir.join("missing"))), Err(SecretsError::Unreadable { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
