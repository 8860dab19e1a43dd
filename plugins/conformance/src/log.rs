//! ABI v2's log channel in the kit: the instance is opened with a log sink, as sealbackd opens
//! it, and at the end the `log` case checks what the plugin wrote there: no line may contain the
//! value of an option whose name says it is secret (`secret`, `password`, `token`).

use std::sync::{Arc, Mutex};

use sealback_plugin_api::host::LogSink;

use crate::report::Outcome;

/// The lines the plugin logged, shared with the sink.
#[derive(Clone, Default)]
pub(crate) struct Logged(Arc<Mutex<Vec<String>>>);

impl Logged {
    pub(crate) fn sink(&self) -> LogSink {
        let lines = Arc::clone(&self.0);
        Box::new(move |_, line| {
            lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line.to_owned())
        })
    }

    /// Passed when no logged line holds a secret option's value.
    pub(crate) fn verdict(&self, options_json: &str) -> Outcome {
        let secrets = secret_values(options_json);
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for line in lines.iter() {
            if let Some((name, _)) = secrets
                .iter()
                .find(|(_, value)| line.contains(value.as_str()))
            {
                return Outcome::Failed(format!(
                    "the plugin logged the value of the option `{name}` (a secret) in: {:?}",
                    line.replace(
                        secrets
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or("", |(_, v)| v.as_str()),
                        "***"
                    )
                ));
            }
        }
        Outcome::Passed
    }
}

/// `(name, value)` of the string options whose names say they hold a secret.
fn secret_values(options_json: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(options)) = serde_json::from_str(options_json) else {
        return Vec::new();
    };
    options
        .into_iter()
        .filter(|(name, _)| {
            ["secret", "password", "token"]
                .iter()
                .any(|s| name.contains(s))
                && !name.ends_with("_file")
                && !name.ends_with("_env")
        })
        .filter_map(|(name, value)| Some((name, value.as_str()?.to_owned())))
        .filter(|(_, value)| value.len() >= 4)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_secret_fails_and_is_not_repeated() {
        let logged = Logged::default();
        let sink = logged.sink();
        sink(3, "uploading packs/ab");
        assert_eq!(
            logged.verdict(r#"{"client_secret":"s3cr3t","path":"/x"}"#),
            Outcome::Passed
        );
        sink(3, "refreshing with s3cr3t");
        match logged.verdict(r#"{"client_secret":"s3cr3t"}"#) {
            Outcome::Failed(why) => assert!(
                why.contains("client_secret") && !why.contains("s3cr3t"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
