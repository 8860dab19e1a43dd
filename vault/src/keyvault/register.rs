//! OPAQUE registration, deletion and the status of an account's record.

use opaque_ke::{RegistrationRequest, RegistrationUpload, ServerRegistration};
use sealback_vault_client::protocol::sealed_key::SEALED_KEY_LEN;
use sealback_vault_client::protocol::suite::Suite;
use sealback_vault_client::protocol::wire::{
    DeleteRecord, Done, ErrorCode, RegisterFinish, RegisterStart, RegisterStartAnswer, StatusAnswer,
};

use super::{KeyVault, Refusal, internal};
use crate::account::StoredRecord;
use crate::audit::{Event, EventKind};
use crate::record;

impl KeyVault {
    /// `GET /v1/record/status`: consumes nothing.
    pub fn status(&self, credential: &str, account: &str) -> Result<StatusAnswer, Refusal> {
        let (entry, _) = self.authenticate(credential, account)?;
        Ok(StatusAnswer {
            registered: entry.record.is_some(),
            attempts_left: self.guess_limit.saturating_sub(entry.guesses),
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
        let message = RegistrationRequest::deserialize(&request.request).map_err(|err| {
            Refusal::bad_request(format!(
                "request is not an OPAQUE registration request: {err}"
            ))
        })?;
        let (version, _) = self.update(account, |entry| {
            entry.last_version += 1;
            Ok(entry.last_version)
        })?;
        let identifier = record::credential_identifier(account, version);
        let start = ServerRegistration::start(&self.setup, message, &identifier)
            .map_err(|err| internal("OPAQUE registration start", err))?;
        Ok(RegisterStartAnswer {
            response: start.message.serialize().to_vec(),
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
        let upload = RegistrationUpload::<Suite>::deserialize(&request.upload).map_err(|err| {
            Refusal::bad_request(format!(
                "upload is not an OPAQUE registration upload: {err}"
            ))
        })?;
        if request.sealed_key.len() != SEALED_KEY_LEN {
            return Err(Refusal::bad_request(format!(
                "sealed_key has {} bytes, not {SEALED_KEY_LEN}",
                request.sealed_key.len()
            )));
        }
        let registration = ServerRegistration::finish(upload).serialize();
        let version = request.record_version;
        let sealed = record::seal(
            &self.hsm,
            account,
            version,
            &registration,
            &request.sealed_key,
        )?;
        let (replaced, revision) = self.update(account, |entry| {
            if version != entry.last_version {
                return Err(Refusal::new(
                    ErrorCode::Conflict,
                    "another registration of this account started after this one; register \
                     again",
                ));
            }
            let replaced = entry.record.is_some();
            entry.record = Some(StoredRecord {
                version,
                sealed: sealed.clone(),
            });
            entry.guesses = 0;
            entry.destroyed = false;
            Ok(replaced)
        })?;
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
        let ((), revision) = self.update(account, |entry| match &entry.record {
            Some(record) if record.version == version => {
                entry.record = None;
                entry.guesses = 0;
                Ok(())
            }
            _ => Err(Refusal::new(
                ErrorCode::Conflict,
                "the record changed since the login; nothing was deleted",
            )),
        })?;
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
