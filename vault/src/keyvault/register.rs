//! OPAQUE registration, deletion and the status of an account's record.

use sealback_vault_client::protocol::wire::{
    DeleteRecord, Done, ErrorCode, RegisterFinish, RegisterStart, RegisterStartAnswer, StatusAnswer,
};

use super::{KeyVault, Refusal};
use crate::audit::{Event, EventKind};

impl KeyVault {
    /// `GET /v1/record/status`: consumes nothing.
    pub fn status(&self, credential: &str, account: &str) -> Result<StatusAnswer, Refusal> {
        let (entry, _) = self.authenticate(credential, account)?;
        Ok(StatusAnswer {
            registered: entry.record.is_some(),
            attempts_left: self.check.limit().saturating_sub(entry.guesses),
            key_destroyed: entry.destroyed,
        })
    }

    /// `POST /v1/register/start`: reserves the next record version and evaluates the OPRF.
    pub fn register_start(
        &self,
        credential: &str,
        request: &RegisterStart,
    ) -> Result<RegisterStartAnswer, Refusal> {
        let account = request.account.as_str();
        self.authenticate(credential, account)?;
        let (version, _) = self.update(account, |entry| Ok(self.check.reserve_version(entry)))?;
        let response = self.check.register(account, version, &request.request)?;
        Ok(RegisterStartAnswer {
            response,
            record_version: version,
        })
    }

    /// `POST /v1/register/finish`: seals the record with the HSM and makes it the
    /// account's, replacing any earlier one; the guess count starts over.
    pub fn register_finish(
        &self,
        credential: &str,
        request: &RegisterFinish,
    ) -> Result<Done, Refusal> {
        let account = request.account.as_str();
        self.authenticate(credential, account)?;
        let version = request.record_version;
        let record =
            self.check
                .seal_record(account, version, &request.upload, &request.sealed_key)?;
        let (replaced, revision) =
            self.update(account, |entry| self.check.install(entry, record.clone()))?;
        if replaced && let Err(err) = self.store.purge_history() {
            tracing::error!(
                "replaced the record of {account}, but the store kept old pages: {err}"
            );
        }
        self.audit.append(
            Event::new(EventKind::Register, account)
                .version(version)
                .written(revision),
        );
        Ok(Done { ok: true })
    }

    /// `DELETE /v1/record`: erases the record, given a login that proved the password on it
    /// less than the login expiry ago.
    pub fn delete(&self, credential: &str, request: &DeleteRecord) -> Result<Done, Refusal> {
        let account = request.account.as_str();
        self.authenticate(credential, account)?;
        let version = self
            .logins
            .take_authenticated(&request.login_id, account)
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::Conflict,
                    "deleting needs a login of this account that proved the password within \
                     the last minute; log in again",
                )
            })?;
        let ((), revision) = self.update(account, |entry| self.check.delete(entry, version))?;
        if let Err(err) = self.store.purge_history() {
            tracing::error!("deleted the record of {account}, but the store kept old pages: {err}");
        }
        self.audit.append(
            Event::new(EventKind::Delete, account)
                .version(version)
                .written(revision),
        );
        Ok(Done { ok: true })
    }
}
