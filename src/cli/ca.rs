//! `ca init` and `ca csr`: a CA key on a PKCS#11 token before any issuer uses it. `init` makes
//! the key pair on the token (sensitive, never extractable; an existing label is refused) and
//! writes a self-signed CA certificate or a CSR for an offline root; `csr` writes a CSR for a key
//! already there. Every signature is made by the token and verified here, through the same
//! `Pkcs11Key` the controller signs with.
//!
//! The PEM goes to `--out` (a line on stdout says what was written) or to stdout (the line then
//! goes to stderr, so that stdout is the PEM alone).

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand};
use jiff::{SignedDuration, Timestamp};

use super::CliError;
use crate::certificate::spec::{MAXIMUM_DURATION, MINIMUM_DURATION, parse_go_duration};
use crate::pkcs11::generate::{TokenKeyAlgorithm, generate_key_pair};
use crate::pkcs11::module::Module;
use crate::pkcs11::registry::without_line_end;
use crate::pkcs11::{HsmError, Pkcs11Key, Pkcs11Registry, Pkcs11Settings, Pkcs11Uri};
use crate::pki::{
    CertificateTemplate, PkiError, Usage, build_ca_csr, check_name_length, parse_certificate_chain,
    same_public_key, sign_self_signed,
};

/// A self-signed CA certificate's lifetime when `--duration` is not given: ten years.
pub const DEFAULT_CA_DURATION: &str = "87600h";

// `--help` examples (macros, for `concat!`): a root made on the token, a CSR for an
// intermediate made there, a CSR for a key already there.
macro_rules! init_self_signed {
    () => {
        "  certkeeper ca init --key 'pkcs11:token=ca;object=root-2026' \\\n    \
    --module /usr/lib/softhsm/libsofthsm2.so --pin-file pin \\\n    \
    --common-name 'Example HSM Root' --self-signed --duration 87600h --out root.crt\n"
    };
}
macro_rules! init_csr {
    () => {
        "  certkeeper ca init --key 'pkcs11:token=ca;object=issuing-2026' \\\n    \
    --module /usr/lib/softhsm/libsofthsm2.so --pin-file pin \\\n    \
    --common-name 'Example Issuing CA' --csr --out issuing.csr\n"
    };
}
macro_rules! csr {
    () => {
        "  certkeeper ca csr --key 'pkcs11:token=ca;object=issuing-2026' \\\n    \
    --module /usr/lib/softhsm/libsofthsm2.so --pin-file pin \\\n    \
    --common-name 'Example Issuing CA' --out issuing.csr\n"
    };
}

#[derive(Debug, Args)]
#[command(after_help = concat!("Examples:\n", init_self_signed!(), csr!()))]
pub struct CaArgs {
    #[command(subcommand)]
    pub what: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a CA key pair on a PKCS#11 token (sensitive, never extractable; an existing label
    /// is refused) and write a self-signed CA certificate, or a CSR for an offline root.
    #[command(
        override_usage = init_usage("certkeeper"),
        after_help = concat!("Examples:\n", init_self_signed!(), init_csr!())
    )]
    Init(InitArgs),
    /// Write a CSR for a CA key already on a PKCS#11 token (its certificate expires, the key
    /// stays).
    #[command(after_help = concat!("Example:\n", csr!()))]
    Csr(KeyArgs),
}

/// `ca init`'s usage line, in two lines: clap's own is longer than 100 columns.
pub fn init_usage(binary: &str) -> String {
    format!(
        "{binary} ca init --key <URI> --pin-file <FILE> --common-name <CN>\n       \
         <--self-signed [--duration <D>] | --csr> [OPTIONS]"
    )
}

/// Which key on which token, how to log in, and what to write.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The key's RFC 7512 PKCS#11 URI: the token (token= or serial=) and the key (object=,
    /// id=). Never a PIN.
    #[arg(long, value_name = "URI")]
    pub key: String,
    /// The PKCS#11 module, the HSM vendor's library [default: the URI's module-path].
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,
    /// A file holding the token's user PIN (one line end after it is ignored).
    #[arg(long, value_name = "FILE")]
    pub pin_file: PathBuf,
    /// The CA's common name, the subject of its certificate.
    #[arg(long, value_name = "CN")]
    pub common_name: String,
    /// Write the PEM to this file [default: stdout].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("writes").required(true).args(["self_signed", "csr"])))]
pub struct InitArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// The key pair to make.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub algorithm: TokenKeyAlgorithm,
    /// Write a self-signed CA certificate (a root).
    #[arg(long)]
    pub self_signed: bool,
    /// The self-signed certificate's lifetime, a Go duration [default: 87600h, ten years].
    #[arg(long, value_name = "D", conflicts_with = "csr")]
    pub duration: Option<String>,
    /// Write a CSR for an offline root to sign (an intermediate CA).
    #[arg(long)]
    pub csr: bool,
}

/// What a command made: the PEM, the file it was written to (stdout when none), and one line
/// saying what it is.
#[derive(Debug)]
pub struct Written {
    pub pem: String,
    pub out: Option<PathBuf>,
    pub line: String,
}

impl Written {
    /// Prints the PEM when it had no file, and the line (on stderr beside a PEM on stdout).
    pub fn finish(self) -> Result<(), CliError> {
        match self.out {
            Some(_) => println!("{}", self.line),
            None => {
                print!("{}", self.pem);
                eprintln!("{}", self.line);
            }
        }
        Ok(())
    }
}

/// Runs `ca init` or `ca csr`, writing `--out` when given. Blocking (the token is called
/// synchronously).
pub fn run(args: &CaArgs, now: Timestamp) -> Result<Written, CliError> {
    match &args.what {
        CaCommand::Init(init) => run_init(init, now),
        CaCommand::Csr(key) => run_csr(key),
    }
}

/// The token's answer as one line, with the key it was about.
fn hsm(uri: &Pkcs11Uri) -> impl Fn(HsmError) -> CliError + '_ {
    move |e| CliError::Hsm {
        key: uri.to_string(),
        message: e.message,
    }
}

/// A signing failure: the token's own error, or what was wrong with what was signed.
fn signing<'a>(uri: &'a Pkcs11Uri, what: &'static str) -> impl Fn(PkiError) -> CliError + 'a {
    move |e| match e {
        PkiError::Hsm(e) => hsm(uri)(e),
        other => CliError::Invalid(format!("cannot sign the {what} with {uri}: {other}")),
    }
}

fn run_init(args: &InitArgs, now: Timestamp) -> Result<Written, CliError> {
    let uri = key_uri(&args.key.key)?;
    let Some(label) = uri.object.clone() else {
        return Err(CliError::Invalid(format!(
            "{uri}: name the new key with object= (its label on the token)"
        )));
    };
    // Everything that can be refused is refused before the key exists: a key made for a
    // command that then fails would stay on the token, its label taken.
    check_common_name(&args.key.common_name)?;
    let lifetime = match args.self_signed {
        true => Some(lifetime(args.duration.as_deref())?),
        false => None,
    };
    let pin = read_pin(&args.key.pin_file)?;
    let registry = registry(&uri, args.key.module.as_deref())?;
    let module = registry.module_for(&uri).map_err(hsm(&uri))?;
    let spki = generate_key_pair(&module, &uri, &pin, args.algorithm).map_err(hsm(&uri))?;
    let made = format!(
        "key {label:?} ({}) made on the token",
        clap::ValueEnum::to_possible_value(&args.algorithm)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    );
    // From here on the key exists: a failure says so.
    let stays = |e: CliError| match e {
        CliError::Hsm { key, message } => CliError::Hsm {
            key,
            message: format!("{message} (the new key {label:?} stays on the token)"),
        },
        other => other,
    };
    let key = registry
        .open_key(&uri, &pin, &spki)
        .map_err(hsm(&uri))
        .map_err(stays)?;
    let (pem, what) = match lifetime {
        Some(lifetime) => {
            let (pem, not_after) =
                self_signed(&key, &uri, &spki, &args.key.common_name, now, lifetime).map_err(stays)?;
            (
                pem,
                format!(
                    "self-signed CA certificate {:?} valid until {not_after}",
                    args.key.common_name
                ),
            )
        }
        None => (
            build_ca_csr(&args.key.common_name, None, &key)
                .map_err(signing(&uri, "CSR"))
                .map_err(stays)?,
            format!("CSR for {:?}", args.key.common_name),
        ),
    };
    write(&args.key, pem, &format!("{made}; {what}"))
}

fn run_csr(args: &KeyArgs) -> Result<Written, CliError> {
    let uri = key_uri(&args.key)?;
    check_common_name(&args.common_name)?;
    let pin = read_pin(&args.pin_file)?;
    let registry = registry(&uri, args.module.as_deref())?;
    let spki = registry.token_public_key(&uri, &pin).map_err(hsm(&uri))?;
    let key = registry.open_key(&uri, &pin, &spki).map_err(hsm(&uri))?;
    let pem = build_ca_csr(&args.common_name, None, &key).map_err(signing(&uri, "CSR"))?;
    write(args, pem, &format!("CSR for {:?} with {uri}", args.common_name))
}

/// A self-signed CA certificate for the key, signed on the token, and its notAfter; its
/// signature is checked once more against the public key the token made.
fn self_signed(
    key: &Pkcs11Key,
    uri: &Pkcs11Uri,
    spki: &[u8],
    common_name: &str,
    now: Timestamp,
    lifetime: SignedDuration,
) -> Result<(String, Timestamp), CliError> {
    let template = CertificateTemplate {
        common_name: Some(common_name.to_owned()),
        not_before: now,
        not_after: now + lifetime,
        is_ca: true,
        // `is_ca` adds keyCertSign and cRLSign; the CA key signs OCSP answers itself.
        usages: vec![Usage::DigitalSignature],
        ..Default::default()
    };
    let issued = sign_self_signed(&template, key).map_err(signing(uri, "certificate"))?;
    let verified = parse_certificate_chain(issued.certificate_pem.as_bytes())
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .is_some_and(|cert| cert.self_signed && same_public_key(&cert.public_key_der, spki));
    if !verified {
        return Err(CliError::Hsm {
            key: uri.to_string(),
            message: "the self-signed certificate does not verify against the key the token made".into(),
        });
    }
    Ok((issued.certificate_pem, issued.not_after))
}

/// The URI, parsed and checked as an issuer's would be (a PIN in it is refused, unshown).
fn key_uri(text: &str) -> Result<Pkcs11Uri, CliError> {
    let uri: Pkcs11Uri = text
        .parse()
        .map_err(|e: crate::pkcs11::uri::UriError| CliError::Invalid(format!("--key: {e}")))?;
    uri.check_key_reference()
        .map_err(|e| CliError::Invalid(format!("--key: {e}")))?;
    Ok(uri)
}

fn check_common_name(common_name: &str) -> Result<(), CliError> {
    check_name_length("--common-name", common_name).map_err(|e| match e {
        PkiError::InvalidCertificate(why) => CliError::Invalid(why),
        other => CliError::Invalid(other.to_string()),
    })
}

/// `--duration`, or ten years: a Go duration from 1h to 100 years.
fn lifetime(duration: Option<&str>) -> Result<SignedDuration, CliError> {
    let value = duration.unwrap_or(DEFAULT_CA_DURATION);
    let lifetime = parse_go_duration(value).map_err(|why| CliError::Invalid(format!("--duration {why}")))?;
    if lifetime < MINIMUM_DURATION || lifetime > MAXIMUM_DURATION {
        return Err(CliError::Invalid(format!(
            "--duration {value:?} must be from 1h to {}h",
            MAXIMUM_DURATION.as_hours()
        )));
    }
    Ok(lifetime)
}

/// The PIN from its file, without the line end `echo` leaves. Never shown anywhere.
fn read_pin(path: &Path) -> Result<String, CliError> {
    let unreadable = |reason: String| CliError::Read {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable("the PIN is not UTF-8 text".into()))?;
    let pin = without_line_end(&text);
    if pin.is_empty() {
        return Err(unreadable("the PIN file is empty".into()));
    }
    Ok(pin.to_owned())
}

/// A registry of the one module: `--module`, else the URI's module-path. Both given must name
/// the same library. Nothing is loaded yet.
fn registry(uri: &Pkcs11Uri, module: Option<&Path>) -> Result<Pkcs11Registry, CliError> {
    let path = match (module, &uri.module_path) {
        (Some(path), _) => path.to_owned(),
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => {
            return Err(CliError::Invalid(
                "which PKCS#11 module? Give --module PATH, the HSM vendor's library \
                 (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
                    .into(),
            ));
        }
    };
    // Named as the URI names it, so that a module-name= in it is this module; else by its
    // file name (messages give the path beside the name).
    let name = uri.module_name.clone().unwrap_or_else(|| {
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    });
    if let Some(in_uri) = &uri.module_path
        && !Module::new(name.clone(), &path).is_at(Path::new(in_uri))
    {
        return Err(CliError::Invalid(format!(
            "the key URI's module-path={in_uri} is not --module {}",
            path.display()
        )));
    }
    Ok(Pkcs11Registry::new(Pkcs11Settings {
        modules: vec![(name, path)],
        // One command, one signature at a time.
        sessions: 1,
        ..Pkcs11Settings::default()
    }))
}

/// Writes the PEM to `--out` (mode 0644: a certificate or request is public), or leaves it
/// for stdout.
fn write(args: &KeyArgs, pem: String, what: &str) -> Result<Written, CliError> {
    let line = match &args.out {
        Some(path) => {
            std::fs::write(path, &pem).map_err(|e| CliError::Write {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            format!("{what}: written to {}", path.display())
        }
        None => what.to_owned(),
    };
    Ok(Written {
        pem,
        out: args.out.clone(),
        line,
    })
}
