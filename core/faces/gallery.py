"""The recognition gallery: people and their face embeddings in SQLite, searched with one matrix product.

Schema (one file, WAL journal so readers never block the writer and a crash mid-write
leaves the last committed state)::

    people(id, name UNIQUE, created)
    faces(id, person_id -> people ON DELETE CASCADE, backend, dim, embedding BLOB float32, chip PNG,
          digest UNIQUE per person and backend)  -- a retried enrollment adds no face twice
    meta(key, value)   -- "revision": bumped by every write, so cached search matrices know when to reload

Every public method opens its own short-lived connection: safe from Gradio's worker threads
and from several processes sharing one ``--gallery`` file. An enrollment (a person and all
their faces) is one transaction: it is there entirely or not at all. A storage fault (a
read-only or vanished file, a full disk) reaches the user as one sentence, never a traceback.

:class:`Galleries` hands each visitor's session a gallery of its own and deletes it when the
session ends, after an idle hour, or at the next start of the app (faces are biometric data).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sqlite3
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.errors import UserError

#: Longest wait for another writer's lock before giving up (twenty clients enrolling at once wait in turn).
BUSY_TIMEOUT_MS = 30_000
MAX_NAME_LENGTH = 80

log = logging.getLogger("cvhub")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    backend TEXT NOT NULL,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    chip BLOB,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_backend ON faces(backend, person_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0);
"""


@dataclass
class Person:
    id: int
    name: str
    faces: int


@dataclass
class Match:
    """The nearest enrolled person for one query face; ``name`` is None when ``distance > threshold``."""

    name: str | None
    nearest: str | None  # the nearest person even when not recognized (for the explanation)
    distance: float  # squared L2

    @property
    def recognized(self) -> bool:
        return self.name is not None


class EmbeddingIndex:
    """All embeddings of one backend as a ``G x D`` matrix with their owners, for one-GEMM search."""

    def __init__(self, embeddings: torch.Tensor, person_ids: np.ndarray, names: dict[int, str]):
        # Stored transposed (D x G, contiguous): the search GEMM then streams the gallery row by row.
        self.embeddings_t = embeddings.float().T.contiguous()
        self.embeddings = self.embeddings_t.T  # G x D view
        self.sq_norms = self.embeddings.pow(2).sum(-1)  # precomputed once per gallery revision
        self.person_ids = person_ids
        self.names = names

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def search(self, queries: torch.Tensor, threshold: float) -> list[Match]:
        """``Q x D`` queries -> Q matches: nearest face over the whole gallery, one matrix product."""
        if len(self) == 0:
            return [Match(None, None, float("inf")) for _ in range(queries.shape[0])]
        # The lecture's ||q - g||^2 = ||q||^2 - 2 q.g + ||g||^2 (see distances.pairwise_squared_l2), but
        # ||q||^2 does not change which g is nearest: add it after the min, over Q numbers instead of Q x G.
        queries = queries.float()
        partial = torch.addmm(self.sq_norms.unsqueeze(0), queries, self.embeddings_t, alpha=-2.0)  # Q x G
        best, idx = partial.min(dim=1)
        best = (best + queries.pow(2).sum(-1)).clamp_min(0.0)
        out = []
        for dist, j in zip(best.tolist(), idx.tolist()):
            name = self.names[int(self.person_ids[j])]
            out.append(Match(name if dist <= threshold else None, name, dist))
        return out


def _encode_chip(chip) -> bytes | None:
    """A ``3 x S x S`` uint8 chip (or PIL image) as PNG bytes (a few kB: the people list shows them)."""
    if chip is None:
        return None
    image = chip if isinstance(chip, Image.Image) else Image.fromarray(chip.permute(1, 2, 0).cpu().numpy())
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


#: Unicode categories a name may not hold: control (Cc), format (Cf: zero-width and bidi overrides such as
#: U+200B and U+202E, which make a name look like another or reverse the text around it), surrogates,
#: private use, unassigned, line and paragraph separators.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def check_name(name: str) -> str:
    """A person's name, whitespace folded; plain text (shown escaped everywhere), at most MAX_NAME_LENGTH."""
    name = str(name or "")
    if any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in name.replace("\t", " ")):
        raise UserError("Please type the name without control, invisible (zero-width) or text-direction characters.")
    name = " ".join(name.split())
    if not name:
        raise UserError("Please type the person's name before enrolling.")
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(f"Please use a name of at most {MAX_NAME_LENGTH} characters.")
    return name


def face_digest(backend: str, embedding: torch.Tensor) -> str:
    """What makes a face the same face again: its backend and its embedding's bytes (a retried upload of the
    same photo embeds to the same numbers), so the gallery can refuse to store it twice."""
    data = embedding.detach().float().cpu().contiguous().numpy().astype("<f4").tobytes()
    return hashlib.sha256(backend.encode() + b"\0" + data).hexdigest()


class GalleryUnavailable(UserError):
    """The gallery's storage failed (read-only, deleted, disk full, locked too long)."""


def _storage_error(exc: sqlite3.Error) -> GalleryUnavailable:
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        why = "its storage on the server is read-only"
    elif "locked" in text or "busy" in text:
        why = "it is busy with other visitors' changes"
    elif "disk" in text or "full" in text:
        why = "the server's disk is full or failing"
    else:
        why = "its storage on the server failed"
    return GalleryUnavailable(f"The face gallery cannot be used right now because {why}; the other panels still "
                              "work, so please try again in a minute (or tell whoever runs this app).")


class GalleryStore:
    """A gallery in one SQLite file (``path``); thread- and process-safe.

    >>> store = GalleryStore(tmp / "gallery.db")
    >>> store.enroll("Ada", embeddings, backend="dlib")      # N x D tensor, one transaction
    >>> store.identify(queries, backend="dlib", threshold=0.36)  # Q x D -> Q matches
    """

    def __init__(self, path: str | os.PathLike, *, persistent: bool = False):
        self.path = Path(path)
        self.persistent = persistent  # the operator's shared gallery: its loss is news, not housekeeping
        self._index_lock = threading.Lock()
        self._indexes: dict[str, tuple[int, EmbeddingIndex]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, no permission
            raise UserError(f"The gallery's folder {self.path.parent} cannot be created ({exc.strerror}).") from exc
        try:
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"The gallery file {self.path} is not a usable SQLite database ({exc}).") from exc
        except OSError as exc:  # a folder of that name, no permission
            raise UserError(f"The gallery file {self.path} cannot be opened ({exc.strerror}).") from exc

    def _create_schema(self) -> None:
        # Faces are biometric data: a new file is its owner's alone (SQLite gives its -wal and -shm the same mode).
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            # WAL: readers see the last commit while a writer works; a killed writer's
            # partial transaction is simply not in the log's committed frames.
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            if "digest" not in {row[1] for row in con.execute("PRAGMA table_info(faces)")}:
                con.execute("ALTER TABLE faces ADD COLUMN digest TEXT")  # galleries made before digests
            con.execute("CREATE UNIQUE INDEX IF NOT EXISTS faces_digest ON faces(person_id, backend, digest)")
        finally:
            con.close()

    @contextlib.contextmanager
    def _connect(self):
        if not self.path.exists():
            # Deleted under us (a sweep, an operator): start an empty gallery rather than fail on every click.
            log.warning("gallery file %s vanished; starting an empty gallery there", self.path)
            with self._index_lock:
                self._indexes.clear()
            try:
                self._create_schema()
            except (sqlite3.Error, OSError) as exc:
                raise _storage_error(sqlite3.OperationalError(str(exc))) from exc
            if self.persistent:  # everyone enrolled is gone: the visitor who finds out is told, once
                raise GalleryUnavailable("The shared face gallery's file was deleted on the server, so everyone "
                                         "enrolled in it is gone; an empty gallery was started in its place (whoever "
                                         "runs this app may restore the file from a backup).")
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc
        try:
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode, and much faster
            yield con
        except sqlite3.Error as exc:
            log.warning("gallery %s: %s", self.path, exc)
            raise _storage_error(exc) from exc
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self):
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no deadlocked upgrades)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # ---- writes -------------------------------------------------------------------------
    def enroll(self, name: str, embeddings: torch.Tensor, *, backend: str, chips=None) -> int:
        """Add ``N x D`` embeddings (and optional chips) to ``name`` (created if new); returns how many faces
        were new. A face already stored for this person (same backend, same embedding) is not added again."""
        name = check_name(name)
        embeddings = torch.as_tensor(embeddings).detach().float().cpu()
        if embeddings.dim() == 1:
            embeddings = embeddings.unsqueeze(0)
        if embeddings.shape[0] == 0:
            raise UserError("No face to enroll was found in the photo(s).")
        chips = list(chips) if chips is not None else [None] * embeddings.shape[0]
        blobs = [_encode_chip(c) for c in chips]  # encode outside the lock
        now = time.time()
        with self._write() as con:
            con.execute("INSERT OR IGNORE INTO people(name, created) VALUES (?, ?)", (name, now))
            person_id = con.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO faces(person_id, backend, dim, embedding, chip, created, digest) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(person_id, backend, e.numel(), e.numpy().astype("<f4").tobytes(), blob, now, face_digest(backend, e))
                 for e, blob in zip(embeddings, blobs)],
            )
            return con.total_changes - before

    def rename(self, old: str, new: str) -> None:
        new = check_name(new)
        with self._write() as con:
            if con.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone() and new != old:
                raise UserError(f"'{new}' is already in the gallery; delete one of them or pick another name.")
            if con.execute("UPDATE people SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise UserError(f"'{old}' is not in the gallery.")

    def delete(self, name: str) -> None:
        with self._write() as con:
            if con.execute("DELETE FROM people WHERE name = ?", (name,)).rowcount == 0:
                raise UserError(f"'{name}' is not in the gallery.")

    # ---- reads --------------------------------------------------------------------------
    def people(self) -> list[Person]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT p.id, p.name, COUNT(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id "
                "GROUP BY p.id ORDER BY p.name COLLATE NOCASE").fetchall()
        return [Person(*row) for row in rows]

    def chips(self, name: str, limit: int = 1) -> list[bytes]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT f.chip FROM faces f JOIN people p ON p.id = f.person_id "
                "WHERE p.name = ? AND f.chip IS NOT NULL "
                "ORDER BY f.id LIMIT ?", (name, limit)).fetchall()
        return [r[0] for r in rows]

    def face_rows(self, backend: str) -> list[tuple[int, str, bytes | None]]:
        """``(face id, name, chip PNG)`` of every face of ``backend``, in the order of :meth:`index`'s rows."""
        with self._connect() as con:
            return con.execute("SELECT f.id, p.name, f.chip FROM faces f JOIN people p ON p.id = f.person_id "
                               "WHERE f.backend = ? ORDER BY f.id", (backend,)).fetchall()

    def revision(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]

    def index(self, backend: str) -> EmbeddingIndex:
        """The ``G x D`` search matrix of ``backend``'s faces, reloaded only when the gallery changed."""
        with self._connect() as con:
            con.execute("BEGIN")  # one consistent snapshot for the revision and the rows
            revision = con.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
            with self._index_lock:
                cached = self._indexes.get(backend)
            if cached is not None and cached[0] == revision:
                con.execute("COMMIT")
                return cached[1]
            rows = con.execute("SELECT person_id, dim, embedding FROM faces WHERE backend = ? ORDER BY id",
                               (backend,)).fetchall()
            names = dict(con.execute("SELECT id, name FROM people").fetchall())
            con.execute("COMMIT")
        if rows:
            dim = rows[0][1]
            matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), dim)
            embeddings = torch.from_numpy(matrix.copy())
        else:
            embeddings = torch.zeros((0, 0))
        index = EmbeddingIndex(embeddings, np.array([r[0] for r in rows], dtype=np.int64), names)
        with self._index_lock:
            self._indexes[backend] = (revision, index)
        return index

    def labelled_embeddings(self, backend: str) -> tuple[torch.Tensor, list[str]]:
        """Every face of ``backend``: ``G x D`` embeddings and the owner's name of each row."""
        index = self.index(backend)
        return index.embeddings, [index.names[int(p)] for p in index.person_ids]

    def identify(self, queries: torch.Tensor, *, backend: str, threshold: float) -> list[Match]:
        return self.index(backend).search(queries, threshold)

    def integrity_ok(self) -> bool:
        with self._connect() as con:
            return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def remove_gallery_file(path) -> None:
    """Delete a gallery and its WAL side files."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            Path(str(path) + suffix).unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class Galleries:
    """Which gallery a visitor's session uses: one shared file (the app's ``--gallery PATH``), or else a
    file of the session's own in ``folder``, deleted when the session ends (:meth:`end`), after
    ``max_idle_s`` without use (:meth:`sweep_idle`; API clients never say goodbye), and, should the app
    die first, at the app's next start: files of processes that no longer run are swept when this is made.

    >>> galleries = Galleries(folder)               # per-session galleries
    >>> store = galleries.store("session-hash")     # created on first use
    >>> galleries.end("session-hash")               # the file is gone
    """

    def __init__(self, folder: str | os.PathLike | None = None, *, shared: str | os.PathLike | None = None,
                 max_idle_s: float = 3600.0):
        self.folder = Path(folder) if folder is not None else Path(tempfile.gettempdir()) / "cvhub-galleries"
        self.max_idle_s = max_idle_s
        # Checked now: a bad path fails at start.
        self.shared = GalleryStore(shared, persistent=True) if shared is not None else None
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[GalleryStore, float]] = {}
        if self.shared is None:
            # Visitors' faces: no other account on the host may list or read the folder.
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.chmod(0o700)  # made by an older version, or under another umask
            self.sweep_stale()

    def _path_for(self, session_id: str) -> Path:
        # The process id in the name tells a later start which files nobody serves any more; the
        # session id is hashed so the visitor's token never appears on disk.
        token = hashlib.sha256(session_id.encode()).hexdigest()[:24]
        return self.folder / f"session-{os.getpid()}-{token}.db"

    def store(self, session_id: str | None) -> GalleryStore:
        """The gallery of ``session_id`` (the shared one if there is one), created on first use."""
        if self.shared is not None:
            return self.shared
        if not session_id:
            raise UserError("Your browser session is not known to the server; please reload the page.")
        now = time.monotonic()
        with self._lock:
            store = self._sessions[session_id][0] if session_id in self._sessions else None
            if store is None:
                store = GalleryStore(self._path_for(session_id))
            self._sessions[session_id] = (store, now)
        self.sweep_idle(now)
        return store

    def end(self, session_id: str | None) -> None:
        """The session ended: its gallery file goes now."""
        with self._lock:
            entry = self._sessions.pop(session_id, None) if session_id else None
        if entry is not None:
            remove_gallery_file(entry[0].path)

    def end_all(self) -> None:
        """Every session's gallery goes (the app is stopping)."""
        for session_id in list(self._sessions):
            self.end(session_id)

    def sweep_idle(self, now: float | None = None) -> int:
        """Delete the galleries unused for ``max_idle_s``; returns how many went."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [sid for sid, (_, used) in self._sessions.items() if now - used > self.max_idle_s]
            gone = [self._sessions.pop(sid)[0] for sid in idle]
        for store in gone:
            remove_gallery_file(store.path)
        return len(gone)

    def sweep_stale(self) -> int:
        """Delete the session galleries of processes that no longer run (an app that crashed or was killed)."""
        removed = 0
        for path in self.folder.glob("session-*.db*"):
            pid = path.name.split("-")[1]
            if not pid.isdigit() or not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    def __len__(self) -> int:
        return len(self._sessions)
