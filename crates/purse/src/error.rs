//! What the command line and its wiring fail with. Each variant says whose the failure is;
//! the message is printed as it is and the command exits 1.

use std::fmt;

use purse_app::{AppError, ConfigError};
use purse_engine::EngineError;
use purse_store::StoreError;

#[derive(Debug)]
pub enum Error {
    /// A setting, flag or argument that cannot be used: the message names it.
    Usage(String),
    /// A Purse server refused a request of a client command, or could not be reached.
    Remote(String),
    Store(StoreError),
    Engine(EngineError),
    App(AppError),
    Io(std::io::Error),
    /// Something the program itself could not do (a thread that died, a seed the ledger
    /// refused).
    Failed(String),
}

/// What the command line's functions answer.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Remote(m) | Error::Failed(m) => f.write_str(m),
            Error::Store(e) => write!(f, "{e}"),
            Error::Engine(e) => write!(f, "{e}"),
            Error::App(e) => f.write_str(&e.detail()),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Store(e)
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        Error::Engine(e)
    }
}

impl From<AppError> for Error {
    fn from(e: AppError) -> Error {
        Error::App(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Usage(e.0)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Failed(format!("JSON: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e)
    }
}
