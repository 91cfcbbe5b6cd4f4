//! The sign-in sessions of the operators' console and the citizens' journal, and the sign-ins
//! waiting for the issuer's redirect: where they are kept and for how long.
//!
//! A session is found by the random id of its cookie, kept only hashed (SHA-256): a copy of the
//! store gives no usable cookie. The store is this gateway's memory (the default) or, with
//! `console.sessions_dir`, a folder shared by the gateways behind one load balancer: each
//! record is a file named by that hash and sealed (AES-256-GCM under a key derived from the
//! master secret for this purpose only, bound to the file's name), so that any gateway serves
//! any session and a reader of the folder learns no cookie, token or NIR. A session file's
//! modification time is its last use; a sign-out deletes it, for every gateway at once; a
//! pending sign-in is taken by renaming its file away, so it completes once across all of them.
//!
//! Owns: both stores, the idle and absolute timeouts, and their bounds (a flood of sign-ins or
//! sessions evicts the oldest: it never grows memory or the folder without bound; sessions are
//! bounded per area and per person, so that one account signing in again and again evicts
//! only its own; in the folder, `people/` counts each person's sessions under a keyed hash).
//! Must never: keep a session past its access token's expiry, find a session by anything but
//! its cookie's id, or write a token, a NIR or a cookie in clear.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::secrecy::{ExposeSecret, SecretString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::seal::SealedBox;
use crate::identity::sign_in::PendingSignIn;

/// How long a sign-in may take at the issuer.
const SIGN_IN_LIFETIME: Duration = Duration::from_secs(600);
/// At most this many sign-ins wait at once; at most this many sessions live at once in each
/// area (citizens' journal sessions never evict operators' console ones); at most this many
/// per person and area (one account signing in again and again evicts its own oldest
/// sessions, never other people's).
const MAX_PENDING: usize = 10_000;
const MAX_SESSIONS: usize = 10_000;
const MAX_PER_PERSON: usize = 10;
/// The largest record file read (anything larger is not one of ours).
const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// A write or a take that a crash interrupted leaves a file this old at most before a prune
/// removes it.
const LEFTOVER_AGE: Duration = Duration::from_secs(60);
/// The shared folder is pruned at most this often, or after this many records written by
/// this gateway since its last prune (a flood grows it by that much at most past the bounds).
const PRUNE_EVERY: Duration = Duration::from_secs(10);
const PRUNE_AFTER_WRITES: u32 = 1_000;
/// A time (a file's last use, a sign-in's start) further ahead of this node's clock than this
/// is not believed: the record counts as expired.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Where a session may be used: the operators' console or a citizen's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Console,
    Journal,
}

impl Area {
    pub fn path(self) -> &'static str {
        match self {
            Area::Console => "console",
            Area::Journal => "moi",
        }
    }
}

/// A signed-in person, server side.
pub struct Session {
    pub area: Area,
    /// The access token the gateway validates on every request.
    pub access_token: SecretString,
    /// The ID token's `acr`.
    pub acr: Option<String>,
    /// A citizen's NIR, as the issuer asserted it (the journal's key; never in a page).
    pub nir: Option<SecretString>,
    pub csrf: String,
    started: SystemTime,
    /// When the access token expires (seconds since the epoch).
    token_expiry: i64,
}

/// A sign-in waiting for the issuer's redirect.
pub struct Pending {
    pub area: Area,
    pub sign_in: PendingSignIn,
    /// The console page to open once signed in (checked: a path of this area).
    pub return_to: String,
    /// The value of the browser's sign-in cookie.
    pub browser: String,
    started: SystemTime,
}

/// A fresh random value: 32 bytes, base64url.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// How long ago `t` was: a time slightly ahead of this node's clock counts as now, one more
/// than [`CLOCK_SKEW`] ahead as infinitely old (a last use set in the future never keeps a
/// session alive).
fn age(t: SystemTime) -> Duration {
    match SystemTime::now().duration_since(t) {
        Ok(age) => age,
        Err(ahead) if ahead.duration() <= CLOCK_SKEW => Duration::ZERO,
        Err(_) => Duration::MAX,
    }
}

/// The sessions and pending sign-ins the gateways of a hub share (or this one keeps).
pub struct Sessions {
    idle: Duration,
    absolute: Duration,
    store: Store,
}

enum Store {
    /// This process's memory: `(session, last use)` and sign-ins, by hashed id.
    Memory {
        sessions: Mutex<HashMap<[u8; 32], Kept>>,
        pending: Mutex<HashMap<[u8; 32], Pending>>,
    },
    /// A folder shared by the gateways.
    Folder(Folder),
}

impl Sessions {
    /// Sessions in this gateway's memory.
    pub fn in_memory(idle: Duration, absolute: Duration) -> Self {
        Self {
            idle,
            absolute,
            store: Store::Memory {
                sessions: Mutex::default(),
                pending: Mutex::default(),
            },
        }
    }

    /// Sessions in the shared folder `dir` (created `0700` if absent), sealed by `sealed`;
    /// people are counted under an HMAC of their principal keyed by `people` (the folder names
    /// no principal a reader could confirm).
    pub fn in_folder(
        dir: &Path,
        sealed: SealedBox,
        people: Zeroizing<[u8; 32]>,
        idle: Duration,
        absolute: Duration,
    ) -> std::io::Result<Self> {
        Ok(Self {
            idle,
            absolute,
            store: Store::Folder(Folder::open(dir, sealed, people)?),
        })
    }

    /// What stands for `person` in the store: its SHA-256 in memory, its keyed HMAC in the
    /// shared folder.
    fn person_hash(&self, person: &str) -> [u8; 32] {
        match &self.store {
            Store::Memory { .. } => key(person),
            Store::Folder(folder) => {
                use hmac::{Hmac, Mac};
                let mut mac =
                    <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&*folder.people)
                        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
                mac.update(person.as_bytes());
                mac.finalize().into_bytes().into()
            }
        }
    }

    fn alive(&self, started: SystemTime, last_use: SystemTime, token_expiry: i64) -> bool {
        age(started) < self.absolute
            && age(last_use) < self.idle
            && chrono::Utc::now().timestamp() < token_expiry
    }

    /// Keeps a sign-in under its `state` (the oldest dropped past the bound); `false` if it
    /// could not be kept (the sign-in must not go on).
    pub fn wait_for(
        &self,
        state: &str,
        area: Area,
        sign_in: PendingSignIn,
        return_to: String,
        browser: String,
    ) -> bool {
        let pending = Pending {
            area,
            sign_in,
            return_to,
            browser,
            started: SystemTime::now(),
        };
        match &self.store {
            Store::Memory { pending: map, .. } => {
                let Ok(mut map) = map.lock() else {
                    return false;
                };
                map.retain(|_, p| age(p.started) < SIGN_IN_LIFETIME);
                if map.len() >= MAX_PENDING
                    && let Some(oldest) = map.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| *k)
                {
                    map.remove(&oldest);
                }
                map.insert(key(state), pending);
                true
            }
            Store::Folder(folder) => {
                folder.prune_now_and_then(self.idle);
                let record = PendingRecord {
                    area: pending.area,
                    sign_in: pending.sign_in,
                    return_to: pending.return_to,
                    browser: pending.browser,
                    started: millis(pending.started),
                };
                serde_json::to_vec(&record).is_ok_and(|plain| {
                    folder.write(Kind::SignIn, &key(state), &Zeroizing::new(plain))
                })
            }
        }
    }

    /// Takes the sign-in of `state` (once, across every gateway sharing the store), if it is
    /// still waiting.
    pub fn take_pending(&self, state: &str) -> Option<Pending> {
        let found = match &self.store {
            Store::Memory { pending, .. } => pending.lock().ok()?.remove(&key(state))?,
            Store::Folder(folder) => {
                let (plain, _) = folder.take(Kind::SignIn, &key(state))?;
                let record: PendingRecord = serde_json::from_slice(&plain).ok()?;
                Pending {
                    area: record.area,
                    sign_in: record.sign_in,
                    return_to: record.return_to,
                    browser: record.browser,
                    started: from_millis(record.started),
                }
            }
        };
        (age(found.started) < SIGN_IN_LIFETIME).then_some(found)
    }

    /// Opens a session of `person` (its principal's issuer and subject, as one text); its id
    /// (for the cookie).
    pub fn open(
        &self,
        area: Area,
        person: &str,
        access_token: SecretString,
        acr: Option<String>,
        nir: Option<SecretString>,
        token_expiry: i64,
    ) -> Option<String> {
        let id = random_token()?;
        let session = Session {
            area,
            access_token,
            acr,
            nir,
            csrf: random_token()?,
            started: SystemTime::now(),
            token_expiry,
        };
        let person = self.person_hash(person);
        match &self.store {
            Store::Memory { sessions, .. } => {
                let mut sessions = sessions.lock().ok()?;
                sessions
                    .retain(|_, k| self.alive(k.session.started, k.seen, k.session.token_expiry));
                make_room(&mut sessions, |k| k.session.area == area, MAX_SESSIONS);
                make_room(
                    &mut sessions,
                    |k| k.session.area == area && k.person == person,
                    MAX_PER_PERSON,
                );
                let seen = SystemTime::now();
                sessions.insert(
                    key(&id),
                    Kept {
                        session,
                        person,
                        seen,
                    },
                );
            }
            Store::Folder(folder) => {
                folder.prune_now_and_then(self.idle);
                folder.make_room_for(area, &person);
                let record = SessionRecord::of(&session);
                let plain = Zeroizing::new(serde_json::to_vec(&record).ok()?);
                if !folder.write(Kind::Session(area), &key(&id), &plain) {
                    return None;
                }
                folder.count_for(area, &person, &key(&id));
            }
        }
        Some(id)
    }

    /// The live session of cookie `id` in `area`, seen now (its idle time starts again); an
    /// expired one is removed.
    pub fn touch<T>(&self, id: &str, area: Area, read: impl FnOnce(&Session) -> T) -> Option<T> {
        let k = key(id);
        match &self.store {
            Store::Memory { sessions, .. } => {
                let mut sessions = sessions.lock().ok()?;
                let kept = sessions.get_mut(&k)?;
                if !self.alive(kept.session.started, kept.seen, kept.session.token_expiry) {
                    sessions.remove(&k);
                    return None;
                }
                if kept.session.area != area {
                    return None;
                }
                kept.seen = SystemTime::now();
                Some(read(&kept.session))
            }
            Store::Folder(folder) => {
                let (plain, last_use) = folder.read(Kind::Session(area), &k)?;
                let session = serde_json::from_slice::<SessionRecord>(&plain)
                    .ok()?
                    .session();
                if !self.alive(session.started, last_use, session.token_expiry) {
                    let _ = folder.remove(Kind::Session(area), &k);
                    return None;
                }
                // SECURITY: a session signed out meanwhile (its file deleted by any gateway)
                // is not brought back: the use is recorded on the existing file only.
                if session.area != area || !folder.seen(Kind::Session(area), &k) {
                    return None;
                }
                Some(read(&session))
            }
        }
    }

    /// Ends the session of cookie `id` in `area` (on every gateway sharing the store); `false`
    /// when it may still be there (the store could not be written: the caller must say so).
    #[must_use]
    pub fn close(&self, id: &str, area: Area) -> bool {
        match &self.store {
            Store::Memory { sessions, .. } => sessions
                .lock()
                .map(|mut sessions| {
                    let k = key(id);
                    if sessions
                        .get(&k)
                        .is_some_and(|kept| kept.session.area == area)
                    {
                        sessions.remove(&k);
                    }
                })
                .is_ok(),
            Store::Folder(folder) => folder.remove(Kind::Session(area), &key(id)),
        }
    }
}

/// What a session file holds, sealed (zeroized when dropped).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SessionRecord {
    #[zeroize(skip)]
    area: Area,
    access_token: String,
    acr: Option<String>,
    nir: Option<String>,
    csrf: String,
    /// Sign-in time, milliseconds since the epoch.
    started: u64,
    token_expiry: i64,
}

impl SessionRecord {
    fn of(session: &Session) -> Self {
        Self {
            area: session.area,
            access_token: session.access_token.expose_secret().to_owned(),
            acr: session.acr.clone(),
            nir: session.nir.as_ref().map(|n| n.expose_secret().to_owned()),
            csrf: session.csrf.clone(),
            started: millis(session.started),
            token_expiry: session.token_expiry,
        }
    }

    fn session(&self) -> Session {
        Session {
            area: self.area,
            access_token: SecretString::from(self.access_token.clone()),
            acr: self.acr.clone(),
            nir: self.nir.clone().map(SecretString::from),
            csrf: self.csrf.clone(),
            started: from_millis(self.started),
            token_expiry: self.token_expiry,
        }
    }
}

/// What a pending sign-in's file holds, sealed.
#[derive(Serialize, Deserialize)]
struct PendingRecord {
    area: Area,
    sign_in: PendingSignIn,
    return_to: String,
    browser: String,
    started: u64,
}

/// A session in memory, with what its store keeps beside it.
struct Kept {
    session: Session,
    /// The SHA-256 of the person's principal (issuer and subject): the per-person bound.
    /// (In the folder, `people/` counts a person's sessions instead.)
    person: [u8; 32],
    /// Its last use.
    seen: SystemTime,
}

/// Makes room for one more session among those `of` selects: past `max - 1`, the least
/// recently used go.
fn make_room(sessions: &mut HashMap<[u8; 32], Kept>, of: impl Fn(&Kept) -> bool, max: usize) {
    let mut selected: Vec<(SystemTime, [u8; 32])> = sessions
        .iter()
        .filter(|(_, kept)| of(kept))
        .map(|(k, kept)| (kept.seen, *k))
        .collect();
    if selected.len() >= max {
        selected.sort();
        for (_, k) in selected.drain(..=selected.len() - max) {
            sessions.remove(&k);
        }
    }
}

/// The kinds of record, each in its own subfolder (sessions one per area).
#[derive(Clone, Copy)]
enum Kind {
    Session(Area),
    SignIn,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Session(Area::Console) => "sessions/console",
            Kind::Session(Area::Journal) => "sessions/moi",
            Kind::SignIn => "sign-ins",
        }
    }
}

const KINDS: [Kind; 3] = [
    Kind::Session(Area::Console),
    Kind::Session(Area::Journal),
    Kind::SignIn,
];

/// The shared folder: `sessions/<area>/<hash>` and `sign-ins/<hash>`, each file sealed for
/// its name; `people/<area>/<person hash>/<hash>`, an empty file per session of a person (the
/// per-person bound).
struct Folder {
    root: PathBuf,
    sealed: SealedBox,
    /// When this gateway last pruned the folder, and how many records it wrote since.
    pruned: Mutex<(Option<std::time::Instant>, u32)>,
    /// The key of the people's hashes (`people/<area>/<HMAC of the principal>/`).
    people: Zeroizing<[u8; 32]>,
}

impl Folder {
    fn open(root: &Path, sealed: SealedBox, people: Zeroizing<[u8; 32]>) -> std::io::Result<Self> {
        for kind in KINDS {
            crate::private_fs::create_dir_all(&root.join(kind.dir()))?;
        }
        crate::private_fs::warn_if_open(root, "console sessions");
        Ok(Self {
            root: root.to_path_buf(),
            sealed,
            pruned: Mutex::new((None, 0)),
            people,
        })
    }

    /// Prunes both kinds of record (sessions unused for `idle`, sign-ins past their lifetime,
    /// the oldest past the bounds) when [`PRUNE_EVERY`] has passed or [`PRUNE_AFTER_WRITES`]
    /// records were written since the last prune; counts the write about to be made.
    fn prune_now_and_then(&self, idle: Duration) {
        {
            let mut pruned = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
            let due = pruned.0.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
                || pruned.1 >= PRUNE_AFTER_WRITES;
            if !due {
                pruned.1 += 1;
                return;
            }
            *pruned = (Some(std::time::Instant::now()), 1);
        }
        for area in [Area::Console, Area::Journal] {
            self.prune(Kind::Session(area), idle, MAX_SESSIONS);
            self.forget_people_without_sessions(area);
        }
        self.prune(Kind::SignIn, SIGN_IN_LIFETIME, MAX_PENDING);
    }

    fn person_dir(&self, area: Area, person: &[u8; 32]) -> PathBuf {
        self.root
            .join("people")
            .join(area.path())
            .join(hex::encode(person))
    }

    /// The sessions of `person` in `area` still in the folder, oldest first (markers of
    /// sessions gone are removed).
    fn sessions_of(&self, area: Area, dir: &Path) -> Vec<(SystemTime, PathBuf, PathBuf)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let session = self
                .root
                .join(Kind::Session(area).dir())
                .join(entry.file_name());
            match entry.metadata().and_then(|m| m.modified()) {
                Ok(opened) if session.is_file() => found.push((opened, entry.path(), session)),
                _ => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        found
    }

    /// Makes room for one more session of `person` in `area`: past `MAX_PER_PERSON - 1`,
    /// their oldest go.
    fn make_room_for(&self, area: Area, person: &[u8; 32]) {
        let mut sessions = self.sessions_of(area, &self.person_dir(area, person));
        if sessions.len() >= MAX_PER_PERSON {
            for (_, marker, session) in sessions.drain(..=sessions.len() - MAX_PER_PERSON) {
                let _ = std::fs::remove_file(session);
                let _ = std::fs::remove_file(marker);
            }
        }
    }

    /// Counts session `key` as one of `person`'s in `area`.
    fn count_for(&self, area: Area, person: &[u8; 32], key: &[u8; 32]) {
        let dir = self.person_dir(area, person);
        let made = crate::private_fs::create_dir_all(&dir)
            .and_then(|()| crate::private_fs::create_file(&dir.join(hex::encode(key))));
        if let Err(e) = made {
            tracing::warn!(error = %e.kind(), "a console session could not be counted for its person");
        }
    }

    /// Removes the markers of sessions gone, and the folders of people left without any.
    fn forget_people_without_sessions(&self, area: Area) {
        let people = self.root.join("people").join(area.path());
        for person in std::fs::read_dir(&people).into_iter().flatten().flatten() {
            if self.sessions_of(area, &person.path()).is_empty() {
                let _ = std::fs::remove_dir(person.path());
            }
        }
    }

    fn path(&self, kind: Kind, key: &[u8; 32]) -> PathBuf {
        self.root.join(kind.dir()).join(hex::encode(key))
    }

    /// What a record is sealed for: its kind and its name (a file copied under another name,
    /// or into the other subfolder, does not open).
    fn context(kind: Kind, key: &[u8; 32]) -> Vec<u8> {
        format!("passerelle console {} v1 {}", kind.dir(), hex::encode(key)).into_bytes()
    }

    /// Writes `plain` sealed as the record `key` (a new file, renamed into place).
    fn write(&self, kind: Kind, key: &[u8; 32], plain: &[u8]) -> bool {
        let Some(sealed) = self.sealed.seal(&Self::context(kind, key), plain) else {
            return false;
        };
        let Some(suffix) = random_token() else {
            return false;
        };
        let path = self.path(kind, key);
        let temporary = path.with_extension(format!("new-{suffix}"));
        let written = crate::private_fs::options()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(&sealed)?;
                // Its first use by this node's clock (not the file server's).
                file.set_modified(SystemTime::now())?;
                file.sync_data()
            })
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            tracing::error!(error = %e.kind(), kind = kind.dir(), "a console record could not be written");
            return false;
        }
        true
    }

    /// The record `key` opened, and its last use (`None` for a file that does not open).
    fn read(&self, kind: Kind, key: &[u8; 32]) -> Option<(Zeroizing<Vec<u8>>, SystemTime)> {
        self.read_at(kind, key, &self.path(kind, key))
    }

    fn read_at(
        &self,
        kind: Kind,
        key: &[u8; 32],
        path: &Path,
    ) -> Option<(Zeroizing<Vec<u8>>, SystemTime)> {
        // A plain file only: no link (to a FIFO, or out of the folder) is followed.
        if !std::fs::symlink_metadata(path).ok()?.is_file() {
            return None;
        }
        let file = std::fs::File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
            return None;
        }
        let last_use = meta.modified().ok()?;
        let mut sealed = Vec::new();
        file.take(MAX_RECORD_BYTES).read_to_end(&mut sealed).ok()?;
        // (A record that does not open is left to the prune: a gateway with another master
        // secret, or a short read, must not delete the others' sessions.)
        let opened = self.sealed.open(&Self::context(kind, key), &sealed);
        if opened.is_none() {
            tracing::warn!(
                kind = kind.dir(),
                "a console record does not open under its name (another master secret?)"
            );
        }
        Some((opened?, last_use))
    }

    /// Takes the record `key` away (one taker wins, whichever gateway it runs on).
    fn take(&self, kind: Kind, key: &[u8; 32]) -> Option<(Zeroizing<Vec<u8>>, SystemTime)> {
        let path = self.path(kind, key);
        let taken = path.with_extension(format!("taken-{}", random_token()?));
        std::fs::rename(&path, &taken).ok()?;
        let record = self.read_at(kind, key, &taken);
        let _ = std::fs::remove_file(&taken);
        record
    }

    /// Records a use of `key` now, on its existing file only; `false` if it is gone.
    fn seen(&self, kind: Kind, key: &[u8; 32]) -> bool {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(kind, key))
            .and_then(|file| file.set_modified(SystemTime::now()))
            .is_ok()
    }

    /// Removes the record `key`; `false` if it may still be there.
    fn remove(&self, kind: Kind, key: &[u8; 32]) -> bool {
        match std::fs::remove_file(self.path(kind, key)) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                tracing::error!(error = %e.kind(), kind = kind.dir(), "a console record could not be removed");
                false
            }
        }
    }

    /// Removes the records unused for `max_age` or longer, and the leftovers of interrupted
    /// writes and takes; then the least recently used past `max - 1`, to make room for one.
    fn prune(&self, kind: Kind, max_age: Duration, max: usize) {
        let Ok(entries) = std::fs::read_dir(self.root.join(kind.dir())) else {
            return;
        };
        let mut kept = Vec::new();
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let leftover = entry.file_name().to_string_lossy().contains('.');
            if age(modified) >= max_age || (leftover && age(modified) >= LEFTOVER_AGE) {
                let _ = std::fs::remove_file(entry.path());
            } else if !leftover {
                kept.push((modified, entry.path()));
            }
        }
        if kept.len() >= max {
            kept.sort();
            for (_, path) in kept.drain(..=kept.len() - max) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions in the folder `dir`, sealed with a test key.
    fn in_folder(dir: &Path, sealing: u8, idle: Duration, absolute: Duration) -> Sessions {
        Sessions::in_folder(
            dir,
            SealedBox::new(&[sealing; 32]).unwrap(),
            Zeroizing::new([9; 32]),
            idle,
            absolute,
        )
        .unwrap()
    }

    /// A console session of person `p`, its token expiring at `expiry`.
    fn console_session(sessions: &Sessions, expiry: i64) -> String {
        sessions
            .open(
                Area::Console,
                "p",
                SecretString::from("t"),
                None,
                None,
                expiry,
            )
            .unwrap()
    }

    fn both(idle: Duration) -> (tempfile::TempDir, [Sessions; 2]) {
        let dir = tempfile::tempdir().unwrap();
        let folder = in_folder(dir.path(), 7, idle, Duration::from_secs(60));
        (
            dir,
            [Sessions::in_memory(idle, Duration::from_secs(60)), folder],
        )
    }

    #[test]
    fn sessions_end_when_idle_or_at_the_token_expiry() {
        let (_dir, stores) = both(Duration::from_millis(300));
        for sessions in stores {
            let future = chrono::Utc::now().timestamp() + 3600;
            let id = console_session(&sessions, future);
            assert!(sessions.touch(&id, Area::Console, |_| ()).is_some());
            assert!(
                sessions.touch(&id, Area::Journal, |_| ()).is_none(),
                "another area"
            );
            std::thread::sleep(Duration::from_millis(400));
            assert!(sessions.touch(&id, Area::Console, |_| ()).is_none(), "idle");
            let past = chrono::Utc::now().timestamp() - 1;
            let id = console_session(&sessions, past);
            assert!(
                sessions.touch(&id, Area::Console, |_| ()).is_none(),
                "token expired"
            );
        }
    }

    /// Two gateways sharing the folder: a session opened on one is served by the other, a
    /// sign-out on either ends it on both, and a pending sign-in completes once.
    #[test]
    fn gateways_sharing_the_folder_share_sessions_and_sign_ins_complete_once() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            in_folder(
                dir.path(),
                7,
                Duration::from_secs(60),
                Duration::from_secs(600),
            )
        };
        let (a, b) = (open(), open());
        let future = chrono::Utc::now().timestamp() + 3600;
        let id = a
            .open(
                Area::Journal,
                "citizen",
                SecretString::from("the-token"),
                Some("eidas2".into()),
                Some(SecretString::from("1850512345678")),
                future,
            )
            .unwrap();
        let seen = b.touch(&id, Area::Journal, |s| {
            (
                s.access_token.expose_secret().to_owned(),
                s.nir.as_ref().map(|n| n.expose_secret().to_owned()),
                s.csrf.clone(),
            )
        });
        let (token, nir, csrf) = seen.expect("served by the other gateway");
        assert_eq!(
            (token.as_str(), nir.as_deref()),
            ("the-token", Some("1850512345678"))
        );
        assert_eq!(
            a.touch(&id, Area::Journal, |s| s.csrf.clone()),
            Some(csrf),
            "one form token"
        );
        assert!(b.close(&id, Area::Journal));
        assert!(
            a.touch(&id, Area::Journal, |_| ()).is_none(),
            "signed out everywhere"
        );

        // SECURITY: nothing in clear on disk: no cookie, token, NIR or state.
        let sign_in: PendingSignIn = serde_json::from_value(serde_json::json!({
            "verifier": "a-verifier-of-forty-three-characters-at-least",
            "nonce": "a-nonce",
            "redirect_uri": "https://hub.example/console/callback",
        }))
        .unwrap();
        assert!(a.wait_for(
            "the-state",
            Area::Console,
            sign_in,
            "/console".into(),
            "browser".into()
        ));
        let id = a
            .open(
                Area::Journal,
                "citizen",
                SecretString::from("the-token"),
                None,
                Some(SecretString::from("1850512345678")),
                future,
            )
            .unwrap();
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            for secret in [
                "the-token",
                "1850512345678",
                "the-state",
                "browser",
                id.as_str(),
            ] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
                        && !entry.to_string_lossy().contains(secret),
                    "{secret} in {}",
                    entry.display()
                );
            }
        }
        // People are counted under a keyed hash: the folder does not confirm a principal.
        let people: Vec<String> = std::fs::read_dir(dir.path().join("people/moi"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(people.len(), 1);
        assert_ne!(people[0], hex::encode(key("citizen")));
        // A record copied under another name does not open.
        let sessions = dir.path().join("sessions/moi");
        let file = std::fs::read_dir(&sessions)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let other = random_token().unwrap();
        std::fs::copy(&file, sessions.join(hex::encode(key(&other)))).unwrap();
        assert!(b.touch(&other, Area::Journal, |_| ()).is_none());
        assert!(b.touch(&id, Area::Journal, |_| ()).is_some());
        // Another master secret opens nothing.
        let stranger = in_folder(
            dir.path(),
            8,
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        assert!(stranger.touch(&id, Area::Journal, |_| ()).is_none());

        let taken = b
            .take_pending("the-state")
            .expect("taken on the other gateway");
        assert_eq!(
            (taken.area, taken.browser.as_str()),
            (Area::Console, "browser")
        );
        assert!(a.take_pending("the-state").is_none(), "once");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                files.extend(walk(&entry.path()));
            } else {
                files.push(entry.path());
            }
        }
        files
    }

    /// SECURITY: one person signing in again and again evicts only their own oldest
    /// sessions, never another person's, and journal sessions never evict console ones; in
    /// memory and in the shared folder alike.
    #[test]
    fn one_person_signing_in_again_and_again_evicts_only_their_own_sessions() {
        let (_dir, stores) = both(Duration::from_secs(60));
        for sessions in stores {
            let future = chrono::Utc::now().timestamp() + 3600;
            let open = |area, person: &str| {
                sessions
                    .open(area, person, SecretString::from("t"), None, None, future)
                    .unwrap()
            };
            let operator = open(Area::Console, "operator");
            let citizen = open(Area::Journal, "citizen");
            let mut own = Vec::new();
            for _ in 0..3 * MAX_PER_PERSON {
                own.push(open(Area::Journal, "attacker"));
            }
            assert!(sessions.touch(&operator, Area::Console, |_| ()).is_some());
            assert!(sessions.touch(&citizen, Area::Journal, |_| ()).is_some());
            let alive = own
                .iter()
                .filter(|id| sessions.touch(id, Area::Journal, |_| ()).is_some())
                .count();
            assert_eq!(alive, MAX_PER_PERSON, "their own newest only");
            assert!(
                sessions
                    .touch(own.last().unwrap(), Area::Journal, |_| ())
                    .is_some()
            );
        }
    }

    /// SECURITY: whoever sets a session file's time ahead (its last use) does not keep the
    /// session alive past its idle timeout: a time ahead of the clock counts as expired.
    #[test]
    fn a_last_use_set_in_the_future_keeps_no_session_alive() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = in_folder(
            dir.path(),
            7,
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let future = chrono::Utc::now().timestamp() + 3600;
        let id = console_session(&sessions, future);
        assert!(sessions.touch(&id, Area::Console, |_| ()).is_some());
        let file = dir
            .path()
            .join("sessions/console")
            .join(hex::encode(key(&id)));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        assert!(sessions.touch(&id, Area::Console, |_| ()).is_none());
    }

    #[test]
    fn a_flood_of_sign_ins_or_sessions_keeps_the_folder_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::open(
            dir.path(),
            SealedBox::new(&[7; 32]).unwrap(),
            Zeroizing::new([9; 32]),
        )
        .unwrap();
        for i in 0..12u8 {
            assert!(folder.write(Kind::SignIn, &[i; 32], b"x"));
            folder.prune(Kind::SignIn, Duration::from_secs(600), 5);
        }
        let left = std::fs::read_dir(dir.path().join("sign-ins"))
            .unwrap()
            .count();
        assert!(left <= 5, "{left} records past the bound");
        // A leftover of an interrupted write goes once it is old; records unused past their
        // age go at the next prune.
        folder.prune(Kind::SignIn, Duration::ZERO, 5);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sign-ins"))
                .unwrap()
                .count(),
            0
        );
    }
}
