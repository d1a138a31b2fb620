"""The recognition gallery: people and their face embeddings in SQLite, searched with one matrix product.

Schema (one file, WAL journal so readers never block the writer and a crash mid-write
leaves the last committed state)::

    people(id, name UNIQUE, created)
    faces(id, person_id -> people ON DELETE CASCADE, backend, dim, embedding BLOB float32, chip PNG)
    meta(key, value)   -- "revision": bumped by every write, so cached search matrices know when to reload

Every public method opens its own short-lived connection: safe from Gradio's worker threads
and from several processes sharing one ``--gallery`` file. An enrollment (a person and all
their faces) is one transaction: it is there entirely or not at all.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError

#: Longest wait for another writer's lock before giving up (twenty clients enrolling at once wait in turn).
BUSY_TIMEOUT_MS = 30_000
MAX_NAME_LENGTH = 80

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
    from PIL import Image

    image = chip if isinstance(chip, Image.Image) else Image.fromarray(chip.permute(1, 2, 0).cpu().numpy())
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def check_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise UserError("Please type the person's name before enrolling.")
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(f"Please use a name of at most {MAX_NAME_LENGTH} characters.")
    return name


class GalleryStore:
    """A gallery in one SQLite file (``path``); thread- and process-safe.

    >>> store = GalleryStore(tmp / "gallery.db")
    >>> store.enroll("Ada", embeddings, backend="dlib")      # N x D tensor, one transaction
    >>> store.identify(queries, backend="dlib", threshold=0.36)  # Q x D -> Q matches
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._index_lock = threading.Lock()
        self._indexes: dict[str, tuple[int, EmbeddingIndex]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                # WAL: readers see the last commit while a writer works; a killed writer's
                # partial transaction is simply not in the log's committed frames.
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"The gallery file {self.path} is not a usable SQLite database ({exc}).") from exc

    @contextlib.contextmanager
    def _connect(self):
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode, and much faster
            yield con
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
        """Add ``N x D`` embeddings (and optional chips) to ``name`` (created if new); returns the person id."""
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
            con.executemany(
                "INSERT INTO faces(person_id, backend, dim, embedding, chip, created) VALUES (?, ?, ?, ?, ?, ?)",
                [(person_id, backend, e.numel(), e.numpy().astype("<f4").tobytes(), blob, now)
                 for e, blob in zip(embeddings, blobs)],
            )
        return person_id

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
                "SELECT f.chip FROM faces f JOIN people p ON p.id = f.person_id WHERE p.name = ? AND f.chip IS NOT NULL "
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


def session_gallery_path() -> Path:
    """A fresh per-session gallery file in the temp folder (deleted with the session)."""
    folder = Path(tempfile.gettempdir()) / "cvhub-galleries"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="session-", suffix=".db", dir=folder)
    os.close(fd)
    os.unlink(name)  # sqlite creates it; an empty placeholder would be "not a database"
    return Path(name)


def remove_gallery_file(path) -> None:
    """Delete a session gallery and its WAL side files."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            Path(str(path) + suffix).unlink()


_shared_path: Path | None = None


def set_shared_gallery(path: str | os.PathLike | None) -> GalleryStore | None:
    """Use one persistent gallery file for every visitor (the app's ``--gallery PATH``); None: per-session galleries."""
    global _shared_path
    if path is None:
        _shared_path = None
        return None
    store = GalleryStore(path)  # created and checked now, so a bad path fails at start-up
    _shared_path = store.path
    return store


def shared_gallery_path() -> Path | None:
    return _shared_path
