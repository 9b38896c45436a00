//! The controller's PKCS#11 modules (`--pkcs11-module NAME=PATH`), their token pools, and the
//! HSM-held key of each CA issuer as its Secret names it, bound to the token lazily.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spki::AlgorithmIdentifierOwned;

use super::error::{HsmError, HsmReason};
use super::key::{KeySelector, Pkcs11Key};
use super::module::Module;
use super::pool::{BeforeCall, TokenPool, TokenSelector, pin_hash};
use super::uri::Pkcs11Uri;
use crate::pki::{PkiError, Signer, key_spec_from_spki, signature_algorithm_for};

/// A broken binding is tried again after this long (the issuer recovers within 20 s of the
/// token's return: its reconcile comes at least this often while the key is broken).
pub const RETRY_BROKEN: Duration = Duration::from_secs(5);
/// A bound key is looked for again on the token at most this often by the issuer's check.
pub const PROBE_EVERY: Duration = Duration::from_secs(10);

/// What the controller was told about PKCS#11.
#[derive(Clone, Debug)]
pub struct Pkcs11Settings {
    /// `--pkcs11-module NAME=PATH`, in the order given.
    pub modules: Vec<(String, PathBuf)>,
    /// `--pkcs11-sessions`: logged-in sessions per token.
    pub sessions: usize,
    /// `--pkcs11-sign-timeout`: how long one call into a token may take.
    pub sign_timeout: Duration,
    /// `--pkcs11-allow-namespaced-issuers`.
    pub allow_namespaced_issuers: bool,
}

impl Default for Pkcs11Settings {
    fn default() -> Self {
        Self {
            modules: Vec::new(),
            sessions: 4,
            sign_timeout: Duration::from_secs(10),
            allow_namespaced_issuers: false,
        }
    }
}

/// A pool's key: module name, token, SHA-256 of the PIN.
type PoolKey = (String, TokenSelector, [u8; 32]);

/// The modules, loaded on first use, and a pool per token and PIN.
pub struct Pkcs11Registry {
    pub settings: Pkcs11Settings,
    modules: Vec<Arc<Module>>,
    pools: Mutex<HashMap<PoolKey, Arc<TokenPool>>>,
    before_call: Option<BeforeCall>,
}

impl std::fmt::Debug for Pkcs11Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Registry")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Default for Pkcs11Registry {
    fn default() -> Self {
        Self::new(Pkcs11Settings::default())
    }
}

impl Pkcs11Registry {
    pub fn new(settings: Pkcs11Settings) -> Self {
        let modules = settings
            .modules
            .iter()
            .map(|(name, path)| Arc::new(Module::new(name.clone(), path.clone())))
            .collect();
        Self {
            settings,
            modules,
            pools: Mutex::new(HashMap::new()),
            before_call: None,
        }
    }

    /// Runs `hook` in the session thread before every call (tests: a token that hangs).
    pub fn with_before_call(mut self, hook: BeforeCall) -> Self {
        self.before_call = Some(hook);
        self
    }

    /// The module a URI names, by the rules that keep an Issuer from making the controller
    /// load code: `module-name` is a NAME the controller was given, `module-path` one of its
    /// PATHs; without either, the only module. Nothing is loaded here.
    pub fn module_for(&self, uri: &Pkcs11Uri) -> Result<Arc<Module>, HsmError> {
        let configured = || {
            self.modules
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let by_name = match &uri.module_name {
            Some(name) => Some(self.modules.iter().find(|m| &m.name == name).cloned().ok_or_else(|| {
                HsmError::unsupported(format!(
                    "module-name={name} is not a module the controller was given (--pkcs11-module): {}",
                    if self.modules.is_empty() { "it has none".to_owned() } else { configured() }
                ))
            })?),
            None => None,
        };
        let by_path = match &uri.module_path {
            Some(path) => Some(
                self.modules
                    .iter()
                    .find(|m| m.is_at(Path::new(path)))
                    .cloned()
                    .ok_or_else(|| {
                        HsmError::unsupported(format!(
                            "module-path={path} is not a module the controller was given (--pkcs11-module); an Issuer cannot make it load one"
                        ))
                    })?,
            ),
            None => None,
        };
        match (by_name, by_path) {
            (Some(a), Some(b)) if !Arc::ptr_eq(&a, &b) => Err(HsmError::unsupported(format!(
                "module-name={} and module-path name different modules",
                a.name
            ))),
            (Some(m), _) | (None, Some(m)) => Ok(m),
            (None, None) => match self.modules.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(HsmError::unsupported(
                    "the controller has no PKCS#11 module: start it with --pkcs11-module NAME=PATH",
                )),
                _ => Err(HsmError::unsupported(format!(
                    "the controller has several PKCS#11 modules ({}): name one with module-name=",
                    configured()
                ))),
            },
        }
    }

    /// The pool of sessions on the token `uri` names, for `pin`.
    pub fn pool(&self, uri: &Pkcs11Uri, pin: &str) -> Result<Arc<TokenPool>, HsmError> {
        let module = self.module_for(uri)?;
        let token = TokenSelector {
            label: uri.token.clone(),
            serial: uri.serial.clone(),
            manufacturer: uri.manufacturer.clone(),
            model: uri.model.clone(),
            slot_id: uri.slot_id,
        };
        let key = (module.name.clone(), token.clone(), pin_hash(pin.as_bytes()));
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        Ok(pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(TokenPool::new(
                    module,
                    token,
                    pin,
                    self.settings.sessions,
                    self.settings.sign_timeout,
                    self.before_call.clone(),
                ))
            })
            .clone())
    }

    /// Finds and checks the key `uri` names for the certificate whose public key is
    /// `certificate_spki`. Blocking.
    pub fn open_key(
        &self,
        uri: &Pkcs11Uri,
        pin: &str,
        certificate_spki: &[u8],
    ) -> Result<Pkcs11Key, HsmError> {
        let pool = self.pool(uri, pin)?;
        let selector = KeySelector {
            label: uri.object.clone(),
            id: uri.id.clone(),
        };
        Pkcs11Key::open(pool, selector, uri.to_string(), certificate_spki)
    }

    /// The public key on the token of the key `uri` names, for a request made before its
    /// certificate exists (`ca csr`). Blocking.
    pub fn token_public_key(&self, uri: &Pkcs11Uri, pin: &str) -> Result<Vec<u8>, HsmError> {
        let pool = self.pool(uri, pin)?;
        let selector = KeySelector {
            label: uri.object.clone(),
            id: uri.id.clone(),
        };
        super::key::token_public_key(&pool, selector)
    }
}

/// A PIN as stored, without the one line end a file made with `echo` carries (a PIN Secret,
/// `ca init --pin-file`).
pub fn without_line_end(pin: &str) -> &str {
    pin.strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(pin)
}

/// Where an issuer's PIN is: a key of a Secret beside its CA Secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PinRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

/// What a load of the issuer's key must do now.
pub enum Due {
    /// Bound and recently fine.
    Ready,
    /// Broken, and tried too recently to try again.
    Broken(HsmError),
    /// Not bound, or broken long enough: read the PIN and bind.
    Bind,
    /// Bound; look for the key on the token again.
    Probe(Arc<Pkcs11Key>),
}

#[derive(Default)]
struct Binding {
    key: Option<Arc<Pkcs11Key>>,
    problem: Option<HsmError>,
    tried: Option<Instant>,
    checked: Option<Instant>,
}

/// A CA issuer's key on a token, as its spec names it: bound to the token on first use and
/// again after a failure, never holding key material.
pub struct HsmKey {
    pub uri: Pkcs11Uri,
    pub pin: PinRef,
    spki: Vec<u8>,
    algorithm: AlgorithmIdentifierOwned,
    binding: Mutex<Binding>,
}

impl std::fmt::Debug for HsmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmKey")
            .field("uri", &self.uri.to_string())
            .finish_non_exhaustive()
    }
}

impl HsmKey {
    /// The key `uri` names, for the CA certificate whose public key is `certificate_spki`.
    pub fn new(uri: Pkcs11Uri, pin: PinRef, certificate_spki: &[u8]) -> Result<Self, PkiError> {
        let spec = key_spec_from_spki(certificate_spki)?;
        Ok(Self {
            uri,
            pin,
            spki: certificate_spki.to_vec(),
            algorithm: signature_algorithm_for(spec),
            binding: Mutex::new(Binding::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Binding> {
        self.binding.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this load must do; `probe` for the issuer's own check (Certificates only sign).
    pub fn due(&self, probe: bool) -> Due {
        let binding = self.lock();
        match (&binding.key, &binding.problem) {
            (_, Some(problem)) if binding.tried.is_some_and(|t| t.elapsed() < RETRY_BROKEN) => {
                Due::Broken(problem.clone())
            }
            (Some(key), None) if probe && binding.checked.is_none_or(|t| t.elapsed() >= PROBE_EVERY) => {
                Due::Probe(key.clone())
            }
            (Some(_), None) => Due::Ready,
            _ => Due::Bind,
        }
    }

    /// Records a bind attempt.
    pub fn bound(&self, result: Result<Arc<Pkcs11Key>, HsmError>) -> Result<(), HsmError> {
        let mut binding = self.lock();
        binding.tried = Some(Instant::now());
        match result {
            Ok(key) => {
                binding.key = Some(key);
                binding.problem = None;
                binding.checked = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                binding.problem = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Records a probe.
    pub fn probed(&self, result: Result<(), HsmError>) -> Result<(), HsmError> {
        let mut binding = self.lock();
        binding.checked = Some(Instant::now());
        if let Err(e) = &result {
            binding.problem = Some(e.clone());
            binding.tried = Some(Instant::now());
        }
        result
    }

    /// Why the key cannot sign now, if it cannot.
    pub fn problem(&self) -> Option<HsmError> {
        self.lock().problem.clone()
    }

    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    pub fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        self.algorithm.clone()
    }

    pub fn backend(&self) -> &'static str {
        "pkcs11"
    }

    /// Signs with the bound key; a failure of the token marks the key broken, so the issuer
    /// says so at its next check.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        let key = {
            let binding = self.lock();
            match (&binding.key, &binding.problem) {
                (Some(key), None) => key.clone(),
                (_, Some(problem)) => return Err(PkiError::Hsm(problem.clone())),
                (None, None) => {
                    return Err(PkiError::Hsm(HsmError::unavailable(format!(
                        "the key {} has not been found on its token yet",
                        self.uri
                    ))));
                }
            }
        };
        let signed = Signer::sign(key.as_ref(), message);
        if let Err(PkiError::Hsm(e)) = &signed
            && matches!(e.reason, HsmReason::Unavailable | HsmReason::LoginFailed)
        {
            let mut binding = self.lock();
            binding.problem = Some(e.clone());
            binding.tried = Some(Instant::now());
        }
        signed
    }
}
