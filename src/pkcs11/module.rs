//! One PKCS#11 module (a shared library the controller was given), loaded once, initialised
//! and re-initialised as a whole.
//!
//! Every call into the module holds its gate for reading; re-initialisation (`C_Finalize` +
//! `C_Initialize`, the only way many modules see a token that appeared or came back) holds it
//! for writing, so it never runs while another thread is inside the library. A call that hangs
//! therefore holds re-initialisation off: the issuer stays unavailable rather than the process
//! crashing in a finalised library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};

use super::error::{HsmError, describe};

/// Re-initialisations at most this often: a token that stays away must not make every
/// signature attempt finalise the library.
const REINIT_SPACING: Duration = Duration::from_secs(1);
/// How long a re-initialisation waits for calls in flight to return before giving up.
const REINIT_WAIT: Duration = Duration::from_secs(2);

struct State {
    /// The loaded library, kept for the process's lifetime (dlopen once).
    library: Option<Pkcs11>,
    initialised: bool,
    /// Counts initialisations: sessions and object handles belong to one generation.
    generation: u64,
    /// Why the module is not usable, when it is not.
    error: Option<String>,
}

/// A module and its state.
pub struct Module {
    pub name: String,
    pub path: PathBuf,
    state: RwLock<State>,
    last_init: Mutex<Option<Instant>>,
    /// PINs refused, by token and PIN hash, and when: not tried again for a minute.
    pub(super) refused: Mutex<HashMap<(String, [u8; 32]), Instant>>,
    /// The PIN (hash) each token is logged in with in this generation, and how many of our
    /// sessions are open on it: login state is per token, a second `C_Login` succeeds without
    /// checking its PIN, and closing the last session logs the token out.
    pub(super) logged_in: Mutex<HashMap<String, ([u8; 32], usize)>>,
    /// `C_Login` calls made (tests count them: HSMs lock tokens after a few failures).
    pub(super) logins: AtomicU64,
    /// Held from the look at `logged_in`/`refused` to the login's outcome: sessions opened at
    /// once (a pool's threads, several issuers binding) offer a wrong PIN once, not once each.
    pub(super) login: Mutex<()>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Inside the module: holds its gate for reading.
pub struct Gate<'a> {
    guard: RwLockReadGuard<'a, State>,
}

impl Gate<'_> {
    pub fn pkcs11(&self) -> &Pkcs11 {
        // `enter` hands out a gate only for an initialised library.
        self.guard
            .library
            .as_ref()
            .unwrap_or_else(|| unreachable!("gate on an unloaded module"))
    }

    pub fn generation(&self) -> u64 {
        self.guard.generation
    }
}

impl Module {
    /// A module not loaded yet: loading waits for the first key that needs it.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            state: RwLock::new(State {
                library: None,
                initialised: false,
                generation: 0,
                error: None,
            }),
            last_init: Mutex::new(None),
            refused: Mutex::new(HashMap::new()),
            login: Mutex::new(()),
            logged_in: Mutex::new(HashMap::new()),
            logins: AtomicU64::new(0),
        }
    }

    /// `C_Login` calls made so far.
    pub fn login_attempts(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Enters the module, loading and initialising it first when it is not.
    pub fn enter(&self) -> Result<Gate<'_>, HsmError> {
        {
            let guard = self.read();
            if guard.initialised && guard.library.is_some() {
                return Ok(Gate { guard });
            }
        }
        self.initialise(None)?;
        let guard = self.read();
        if guard.initialised && guard.library.is_some() {
            Ok(Gate { guard })
        } else {
            Err(self.unusable(&guard))
        }
    }

    /// Re-initialises the module after a token-level failure seen in generation `seen`
    /// (nothing to do when someone else already has).
    pub fn reinitialise(&self, seen: u64) -> Result<(), HsmError> {
        self.initialise(Some(seen))
    }

    fn initialise(&self, seen: Option<u64>) -> Result<(), HsmError> {
        let mut state = self.write()?;
        match seen {
            // Someone re-initialised (or initialised) since the failure was seen.
            Some(seen) if state.generation != seen => return Ok(()),
            None if state.initialised => return Ok(()),
            _ => {}
        }
        {
            let mut last = self.last_init.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = *last
                && at.elapsed() < REINIT_SPACING
            {
                return if state.initialised {
                    Ok(())
                } else {
                    Err(self.unusable(&state))
                };
            }
            // A first initialisation that works starts no clock: a token removed right after
            // it must still be looked for again at once.
            if seen.is_some() || !state.initialised && state.error.is_some() {
                *last = Some(Instant::now());
            }
        }
        if state.library.is_none() {
            match Pkcs11::new(&self.path) {
                Ok(library) => state.library = Some(library),
                Err(e) => {
                    state.error = Some(format!(
                        "module {} ({}) does not load: {e}",
                        self.name,
                        self.path.display()
                    ));
                    return Err(self.unusable(&state));
                }
            }
        }
        let Some(library) = state.library.clone() else {
            return Err(self.unusable(&state));
        };
        if state.initialised {
            // Every session and login of the old generation ends here.
            let _ = library.clone().finalize();
            state.initialised = false;
        }
        self.logged_in.lock().unwrap_or_else(|p| p.into_inner()).clear();
        state.generation += 1;
        match library.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                state.initialised = true;
                state.error = None;
                Ok(())
            }
            Err(e) => {
                *self.last_init.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                state.error = Some(format!(
                    "module {} does not initialise: {}",
                    self.name,
                    describe(&e)
                ));
                Err(self.unusable(&state))
            }
        }
    }

    fn unusable(&self, state: &State) -> HsmError {
        HsmError::unavailable(
            state
                .error
                .clone()
                .unwrap_or_else(|| format!("module {} is not initialised", self.name)),
        )
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, State>, HsmError> {
        let deadline = Instant::now() + REINIT_WAIT;
        loop {
            match self.state.try_write() {
                Ok(guard) => return Ok(guard),
                Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(HsmError::unavailable(format!(
                        "module {}: a call into it has not returned; it cannot be re-initialised",
                        self.name
                    )));
                }
            }
        }
    }

    /// Whether `path` names this module: the same string, or the same file once links are
    /// resolved.
    pub fn is_at(&self, path: &Path) -> bool {
        if path == self.path {
            return true;
        }
        match (std::fs::canonicalize(path), std::fs::canonicalize(&self.path)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}
