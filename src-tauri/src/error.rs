//! The one error the UI sees: a closed `code` it branches on and a message it shows
//! as it is (the engine's messages already say what happened and what to do).

use serde::Serialize;
use thinkube_engine::EngineError;
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ErrorCode {
    /// Bad input: an invalid plan, inventory, configuration or argument.
    BadInput,
    /// Another process holds the environment's lock.
    Locked,
    /// The state file cannot be read (or is of a newer format); it was left untouched.
    Unreadable,
    /// The deployment has failed steps: retry them.
    DeploymentFailed,
    /// A file could not be read or written (full disk, permissions).
    Io,
    /// ansible-playbook is missing.
    AnsibleMissing,
    /// The machine must restart before the deployment continues.
    RestartDue,
    /// `--skip-config`: the environment was not ready after every attempt.
    NotReady,
    /// A step needs the SSH password, which is asked for at each start of the app.
    NeedsPassword,
    /// The plan's playbooks need tokens this window has not been given.
    NeedsTokens,
    /// The desktop's keyring could not keep, read or remove a token (none, locked).
    Keyring,
    /// A deployment is already running in this window.
    Busy,
    /// A host does not answer, its login or sudo fails (the pre-flight before a
    /// run), or its VM is not running; or a service asked on the user's behalf
    /// cannot be reached or fails (Azure Resource Manager, git, ansible-inventory).
    NotReachable,
    /// A step's playbook is not where the plan says: nothing ran.
    PlaybookMissing,
    /// A bug in the installer: nothing was written.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS, thiserror::Error)]
#[error("{message}")]
#[ts(export)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        let code = match &e {
            EngineError::Locked { .. }
            | EngineError::StepStillRunning { .. }
            | EngineError::CancelTimedOut { .. }
            | EngineError::StoppedWaiting { .. }
            | EngineError::SharedLocked { .. }
            | EngineError::SharedLockLost { .. } => ErrorCode::Locked,
            EngineError::PlaybookMissing { .. } => ErrorCode::PlaybookMissing,
            EngineError::Internal(_) => ErrorCode::Internal,
            EngineError::Unreadable { .. }
            | EngineError::RunUnreadable { .. }
            | EngineError::StateNotPermitted { .. }
            | EngineError::NewerSchema { .. } => ErrorCode::Unreadable,
            EngineError::DeploymentFailed { .. } => ErrorCode::DeploymentFailed,
            EngineError::Io { .. } => ErrorCode::Io,
            EngineError::AnsibleMissing(_) | EngineError::ToolMissing { .. } => {
                ErrorCode::AnsibleMissing
            }
            EngineError::RestartDue(_) => ErrorCode::RestartDue,
            EngineError::NotReachable { .. }
            | EngineError::Preflight { .. }
            | EngineError::Unavailable(_)
            | EngineError::Shared { .. } => ErrorCode::NotReachable,
            EngineError::NoHome
            | EngineError::InvalidEnvName { .. }
            | EngineError::BadImport { .. }
            | EngineError::Transition(_)
            | EngineError::Usage(_)
            | EngineError::UnfinishedStepsRemoved { .. }
            | EngineError::HostKeys(_)
            | EngineError::Checkout(_)
            | EngineError::PlanCheck { .. }
            | EngineError::InvalidPlan(_)
            | EngineError::Choice(_) => ErrorCode::BadInput,
        };
        Self::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_their_message_and_get_a_code_the_ui_branches_on() {
        let e = AppError::from(EngineError::Unreadable {
            path: "/h/deployment-state.json".into(),
            reason: "not JSON".into(),
        });
        assert_eq!(e.code, ErrorCode::Unreadable);
        assert!(e.message.contains("recover --from-backup"), "{}", e.message);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["code"], "unreadable");
        assert_eq!(
            AppError::from(EngineError::Usage("x".into())).code,
            ErrorCode::BadInput
        );
        // What is not the user's input is not reported as bad input.
        let internal = AppError::from(EngineError::Internal("cannot encode".into()));
        assert_eq!(internal.code, ErrorCode::Internal);
        assert!(
            internal.message.contains("this is a bug"),
            "{}",
            internal.message
        );
        let missing = AppError::from(EngineError::PlaybookMissing {
            step: "s".into(),
            path: "/p/missing.yaml".into(),
            hint: "",
        });
        assert_eq!(missing.code, ErrorCode::PlaybookMissing);
        assert_eq!(
            serde_json::to_value(&missing).unwrap()["code"],
            "playbook_missing"
        );
    }
}
