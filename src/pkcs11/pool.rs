//! A pool of logged-in sessions on one token.
//!
//! A `cryptoki::Session` is `Send` but not `Sync`: each pooled session lives on its own thread
//! and takes work as boxed jobs, so one session is never used by two threads and a call that
//! hangs can be given up on (the caller's wait has a deadline) without losing track of the
//! session: the thread hands itself back to the pool when the call returns. At most `size`
//! threads exist per pool, hung ones included.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::{Class, HsmError, HsmReason, classify, describe, failed};
use super::module::{Gate, Module};

/// A PIN refused by the token is not offered again for this long.
pub const REFUSED_PIN_PAUSE: Duration = Duration::from_secs(60);

/// Which token: the URI's token attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenSelector {
    pub label: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (name, value) in [
            ("token", &self.label),
            ("serial", &self.serial),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name}={value:?}"));
            }
        }
        if let Some(id) = self.slot_id {
            parts.push(format!("slot-id={id}"));
        }
        write!(f, "{}", parts.join(" "))
    }
}

/// What a job run on a pooled session can fail with.
#[derive(Debug)]
pub enum CallError {
    /// A PKCS#11 call failed.
    Pkcs11 { what: &'static str, error: P11Error },
    /// A judgement (key not found, wrong attributes...) or the pool's own failure.
    Hsm(HsmError),
    /// The module was re-initialised since the session opened: it is gone.
    Stale,
}

impl CallError {
    pub fn class(&self) -> Option<Class> {
        match self {
            Self::Pkcs11 { error, .. } => Some(classify(error)),
            Self::Stale => Some(Class::Session),
            Self::Hsm(_) => None,
        }
    }

    pub fn into_hsm(self) -> HsmError {
        match self {
            Self::Pkcs11 { what, error } => failed(what, &error),
            Self::Hsm(e) => e,
            Self::Stale => HsmError::unavailable("the module was re-initialised during the call"),
        }
    }
}

impl From<HsmError> for CallError {
    fn from(e: HsmError) -> Self {
        Self::Hsm(e)
    }
}

/// `what` failed: for `?` on cryptoki results inside jobs.
pub fn p11(what: &'static str) -> impl Fn(P11Error) -> CallError {
    move |error| CallError::Pkcs11 { what, error }
}

type Job = Box<dyn FnOnce(Result<&Session, CallError>, u64) + Send>;

struct Worker {
    jobs: mpsc::Sender<Job>,
    generation: u64,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Worker>,
    alive: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<PoolState>,
    freed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_in(&self, worker: Worker) {
        self.lock().idle.push(worker);
        self.freed.notify_one();
    }
}

/// Counts a session thread while it lives.
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.alive = state.alive.saturating_sub(1);
        drop(state);
        self.0.freed.notify_all();
    }
}

/// A hook run in the session thread before each job (tests: a token that hangs).
pub type BeforeCall = Arc<dyn Fn() + Send + Sync>;

/// Logged-in sessions on one token, for one PIN.
pub struct TokenPool {
    pub module: Arc<Module>,
    pub token: TokenSelector,
    pin: AuthPin,
    pin_sha: [u8; 32],
    size: usize,
    timeout: Duration,
    shared: Arc<Shared>,
    before_call: Option<BeforeCall>,
}

impl std::fmt::Debug for TokenPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPool")
            .field("module", &self.module.name)
            .field("token", &self.token)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a PIN: what is kept to compare PINs without keeping more copies of them.
pub fn pin_hash(pin: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pin);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl TokenPool {
    pub fn new(
        module: Arc<Module>,
        token: TokenSelector,
        pin: &str,
        size: usize,
        timeout: Duration,
        before_call: Option<BeforeCall>,
    ) -> Self {
        Self {
            module,
            token,
            pin: AuthPin::from(pin.to_owned()),
            pin_sha: pin_hash(pin.as_bytes()),
            size: size.max(1),
            timeout,
            shared: Arc::default(),
            before_call,
        }
    }

    pub fn pin_sha(&self) -> [u8; 32] {
        self.pin_sha
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Session threads alive (idle, busy or hung).
    pub fn sessions(&self) -> usize {
        self.shared.lock().alive
    }

    /// Runs `job` on a logged-in session of this token, within the pool's timeout. A session
    /// whose job failed with a session or token error is dropped, not reused.
    pub fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Session, u64) -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, CallError> {
        let deadline = Instant::now() + self.timeout;
        let generation = self.module.generation();
        let worker = match self.check_out(deadline) {
            Ok(worker) => worker,
            // Many modules (SoftHSM among them) see a token that appeared or came back only
            // once re-initialised: do that (spaced by the module) and look once more.
            Err(e) if e.reason == HsmReason::Unavailable => {
                self.module.reinitialise(generation).map_err(CallError::Hsm)?;
                self.check_out(deadline)?
            }
            Err(e) => return Err(e.into()),
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let before = self.before_call.clone();
        let boxed: Job = Box::new(move |session, generation| {
            let result = match session {
                Ok(session) => {
                    if let Some(before) = before {
                        before();
                    }
                    job(session, generation)
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(result);
        });
        if worker.jobs.send(boxed).is_err() {
            return Err(HsmError::unavailable("a session of the pool ended").into());
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(value)) => {
                self.shared.check_in(worker);
                Ok(value)
            }
            Ok(Err(e)) => {
                let keep = match &e {
                    CallError::Pkcs11 { error, .. } => {
                        !matches!(classify(error), Class::Session | Class::Token)
                    }
                    CallError::Hsm(e) => e.reason != HsmReason::Unavailable,
                    CallError::Stale => false,
                };
                if keep {
                    self.shared.check_in(worker);
                }
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => {
                // The session comes back to the pool when its call returns, if ever.
                let shared = self.shared.clone();
                let again = Worker {
                    jobs: worker.jobs.clone(),
                    generation: worker.generation,
                };
                let _ = worker.jobs.send(Box::new(move |_, _| shared.check_in(again)));
                Err(HsmError::unavailable(format!(
                    "the token ({}) did not answer within {:?}",
                    self.token, self.timeout
                ))
                .into())
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(HsmError::unavailable("a session of the pool ended during a call").into())
            }
        }
    }

    fn check_out(&self, deadline: Instant) -> Result<Worker, HsmError> {
        let mut state = self.shared.lock();
        loop {
            let current = self.module.generation();
            // Sessions of an earlier generation died with it: their threads end, unclosed.
            state.idle.retain(|w| w.generation == current);
            if let Some(worker) = state.idle.pop() {
                return Ok(worker);
            }
            if state.alive < self.size {
                state.alive += 1;
                drop(state);
                return self.spawn(deadline);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HsmError::unavailable(format!(
                    "all {} sessions on the token ({}) stayed busy for {:?}",
                    self.size, self.token, self.timeout
                )));
            }
            state = self
                .shared
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Starts a session thread (already counted in `alive`): opens a session, logs in.
    fn spawn(&self, deadline: Instant) -> Result<Worker, HsmError> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<u64, HsmError>>(1);
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let alive = Alive(self.shared.clone());
        let module = self.module.clone();
        let token = self.token.clone();
        let pin = self.pin.clone();
        let pin_sha = self.pin_sha;
        let spawned = std::thread::Builder::new()
            .name("pkcs11-session".into())
            .spawn(move || {
                let _alive = alive;
                let opened = module.enter().and_then(|gate| {
                    open_and_log_in(&module, &gate, &token, &pin, pin_sha)
                        .map(|(s, guard)| (s, guard.into_owned(module.clone()), gate.generation()))
                });
                let (session, login, generation) = match opened {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(generation));
                for job in jobs_rx {
                    match module.enter() {
                        Ok(gate) if gate.generation() == generation => job(Ok(&session), generation),
                        Ok(_) => {
                            job(Err(CallError::Stale), generation);
                            // Its handle may already name a session of the new generation.
                            return;
                        }
                        Err(e) => {
                            job(Err(CallError::Hsm(e)), generation);
                            return;
                        }
                    }
                }
                if let Ok(gate) = module.enter()
                    && gate.generation() == generation
                {
                    let _ = session.close();
                }
                drop(login);
            });
        if let Err(e) = spawned {
            // The closure (and its `Alive`) was dropped with the error.
            return Err(HsmError::unavailable(format!(
                "cannot start a session thread: {e}"
            )));
        }
        match ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(generation)) => Ok(Worker {
                jobs: jobs_tx,
                generation,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(HsmError::unavailable(format!(
                "opening a session on the token ({}) did not finish within {:?}",
                self.token, self.timeout
            ))),
        }
    }
}

/// The slot holding the token `token` names: exactly one.
pub fn find_slot(module: &Module, gate: &Gate<'_>, token: &TokenSelector) -> Result<Slot, HsmError> {
    let pkcs11 = gate.pkcs11();
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| failed("C_GetSlotList", &e))?;
    let mut found = Vec::new();
    for slot in slots {
        if token.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        // A token that went away may still be listed, its info failing: skip it.
        let Ok(info) = pkcs11.get_token_info(slot) else {
            continue;
        };
        let matches = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        if matches(&token.label, info.label())
            && matches(&token.serial, info.serial_number())
            && matches(&token.manufacturer, info.manufacturer_id())
            && matches(&token.model, info.model())
        {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::unavailable(format!(
            "module {}: no token {token} is present",
            module.name
        ))),
        many => Err(HsmError::unavailable(format!(
            "module {}: {} tokens match {token}; name one by serial=",
            module.name,
            many.len()
        ))),
    }
}

/// One of our sessions open and logged in on a token: counted while it lives, so the token
/// is known to be logged out once the last one closes.
pub struct LoginGuard<'m> {
    module: &'m Module,
    token_id: String,
    generation: u64,
}

impl LoginGuard<'_> {
    /// The same count, for a session thread that outlives the borrow.
    pub fn into_owned(self, module: Arc<Module>) -> OwnedLoginGuard {
        let guard = OwnedLoginGuard {
            module,
            token_id: self.token_id.clone(),
            generation: self.generation,
        };
        std::mem::forget(self);
        guard
    }
}

fn session_closed(module: &Module, token_id: &str, generation: u64) {
    // A re-initialisation forgot every login already.
    if module.generation() != generation {
        return;
    }
    let mut logged_in = module.logged_in.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, open)) = logged_in.get_mut(token_id) {
        *open = open.saturating_sub(1);
        if *open == 0 {
            logged_in.remove(token_id);
        }
    }
}

impl Drop for LoginGuard<'_> {
    fn drop(&mut self) {
        session_closed(self.module, &self.token_id, self.generation);
    }
}

/// `LoginGuard` holding its module.
pub struct OwnedLoginGuard {
    module: Arc<Module>,
    token_id: String,
    generation: u64,
}

impl Drop for OwnedLoginGuard {
    fn drop(&mut self) {
        session_closed(&self.module, &self.token_id, self.generation);
    }
}

/// Opens a session on the token and logs it in, keeping to the rules real HSMs need: a refused
/// PIN is not offered again for a minute, a locked PIN or a final try is not tried at all, and
/// a token logged in with one PIN is not lent to another.
pub fn open_and_log_in<'a>(
    module: &'a Module,
    gate: &Gate<'_>,
    token: &TokenSelector,
    pin: &AuthPin,
    pin_sha: [u8; 32],
) -> Result<(Session, LoginGuard<'a>), HsmError> {
    open_session(module, gate, token, pin, pin_sha, false)
}

/// `open_and_log_in` with a read-write session (key generation), closed on drop.
pub fn open_rw_and_log_in<'a>(
    module: &'a Module,
    gate: &Gate<'_>,
    token: &TokenSelector,
    pin: &AuthPin,
    pin_sha: [u8; 32],
) -> Result<(Session, LoginGuard<'a>), HsmError> {
    open_session(module, gate, token, pin, pin_sha, true)
}

fn open_session<'a>(
    module: &'a Module,
    gate: &Gate<'_>,
    token: &TokenSelector,
    pin: &AuthPin,
    pin_sha: [u8; 32],
    read_write: bool,
) -> Result<(Session, LoginGuard<'a>), HsmError> {
    let pkcs11 = gate.pkcs11();
    let slot = find_slot(module, gate, token)?;
    let info = pkcs11
        .get_token_info(slot)
        .map_err(|e| failed("C_GetTokenInfo", &e))?;
    let token_id = format!("{}/{}", info.label(), info.serial_number());
    let login_failed = |why: String| HsmError::new(HsmReason::LoginFailed, why);
    // One login decision at a time per module: a refusal recorded by one is seen by the next.
    let _deciding = module.login.lock().unwrap_or_else(|p| p.into_inner());
    let logged_in_with = module
        .logged_in
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&token_id)
        .map(|(sha, _)| *sha);
    match logged_in_with {
        Some(sha) if sha != pin_sha => {
            return Err(login_failed(format!(
                "the token ({token}) is logged in with a different PIN; a token is logged in \
                 once per controller, so every issuer using it must give the same PIN"
            )));
        }
        _ => {}
    }
    if logged_in_with.is_none() {
        let refused_at = module
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(token_id.clone(), pin_sha))
            .copied();
        if let Some(at) = refused_at
            && at.elapsed() < REFUSED_PIN_PAUSE
        {
            return Err(login_failed(format!(
                "the token ({token}) refused this PIN {}s ago; it is offered again after {}s, \
                 since tokens lock after a few failed logins",
                at.elapsed().as_secs(),
                REFUSED_PIN_PAUSE.as_secs()
            )));
        }
        if info.user_pin_locked() {
            return Err(login_failed(format!("the token's ({token}) user PIN is locked")));
        }
        if info.user_pin_final_try() {
            return Err(login_failed(format!(
                "one more wrong PIN would lock the token ({token}); certkeeper does not try: \
                 check the PIN Secret, then log in once by hand to reset the count"
            )));
        }
    }
    let session = if read_write {
        pkcs11.open_rw_session(slot)
    } else {
        // Not closed on drop: after a re-initialisation its handle number may belong to a
        // session of the new generation.
        pkcs11.open_ro_session_no_drop(slot)
    }
    .map_err(|e| failed("C_OpenSession", &e))?;
    module.logins.fetch_add(1, Ordering::Relaxed);
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
            module
                .logged_in
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(token_id.clone())
                .or_insert((pin_sha, 0))
                .1 += 1;
            Ok((
                session,
                LoginGuard {
                    module,
                    token_id,
                    generation: gate.generation(),
                },
            ))
        }
        Err(e) => {
            let _ = session.close();
            if classify(&e) == Class::LoginRefused {
                module
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((token_id, pin_sha), Instant::now());
                Err(login_failed(format!(
                    "the token ({token}) refused the PIN ({})",
                    describe(&e)
                )))
            } else {
                Err(failed("C_Login", &e))
            }
        }
    }
}

/// Refusals recorded per token, for tests.
#[cfg(test)]
pub fn refused_count(module: &Module) -> usize {
    module.refused.lock().map(|m| m.len()).unwrap_or(0)
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<TokenPool>();
    is::<Module>();
    is::<HashMap<String, Arc<TokenPool>>>();
}
