"""The SQLite gallery: search, list/rename/delete, concurrent enrollments, a writer killed mid-transaction."""

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from core.errors import UserError
from core.faces.gallery import Galleries, GalleryStore, GalleryUnavailable, check_name, remove_gallery_file
from tests.conftest import REPO


def test_enroll_search_rename_delete(tmp_path):
    store = GalleryStore(tmp_path / "g.db")
    store.enroll("Ada", torch.tensor([[0.0, 0.0], [0.0, 0.2]]), backend="toy")
    store.enroll("Bob", torch.tensor([3.0, 4.0]), backend="toy")
    store.enroll("Other backend", torch.tensor([[0.0, 0.0]]), backend="else")
    matches = store.identify(torch.tensor([[0.1, 0.0], [3.0, 3.0], [10.0, 10.0]]), backend="toy", threshold=1.5)
    assert [m.name for m in matches] == ["Ada", "Bob", None]
    assert matches[0].distance == pytest.approx(0.01)  # (0.1)^2: the nearest of Ada's two faces
    assert matches[1].distance == pytest.approx(1.0)
    assert matches[2].nearest == "Bob" and matches[2].distance == pytest.approx(49 + 36)
    store.rename("Ada", "Ada L.")
    assert [(p.name, p.faces) for p in store.people()] == [("Ada L.", 2), ("Bob", 1), ("Other backend", 1)]
    with pytest.raises(UserError):
        store.rename("Bob", "Ada L.")
    store.delete("Bob")
    assert store.identify(torch.tensor([[3.0, 4.0]]), backend="toy", threshold=1.5)[0].name is None
    with pytest.raises(UserError):
        store.delete("Bob")
    with pytest.raises(UserError):
        store.enroll("   ", torch.zeros(1, 2), backend="toy")


def test_search_matches_brute_force_and_sees_other_writers(tmp_path):
    torch.manual_seed(0)
    a, b = GalleryStore(tmp_path / "g.db"), GalleryStore(tmp_path / "g.db")  # two "processes"
    emb = torch.randn(300, 32)
    for k in range(30):
        a.enroll(f"p{k}", emb[10 * k:10 * k + 10], backend="toy")
    queries = torch.randn(7, 32)
    matches = b.identify(queries, backend="toy", threshold=1e9)
    brute = ((queries[:, None] - emb[None]) ** 2).sum(-1).argmin(1) // 10
    assert [m.name for m in matches] == [f"p{int(k)}" for k in brute]
    b.identify(queries, backend="toy", threshold=1e9)  # cached index
    a.enroll("newcomer", queries[0], backend="toy")
    # The cache was invalidated (the threshold allows for float32 rounding, ~1e-5).
    assert b.identify(queries[:1], backend="toy", threshold=1e-3)[0].name == "newcomer"


def test_twenty_concurrent_enrollments_lose_no_row(tmp_path):
    path = tmp_path / "g.db"
    GalleryStore(path)
    barrier = threading.Barrier(20)
    errors = []

    def client(i):
        try:
            store = GalleryStore(path)  # each client its own store, as separate requests/processes would
            barrier.wait()
            # three different faces per person (identical ones would be stored once)
            store.enroll(f"person {i}", torch.full((3, 8), float(i)) + torch.arange(3.0)[:, None] / 10, backend="toy")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = GalleryStore(path)
    people = store.people()
    assert sorted(p.name for p in people) == sorted(f"person {i}" for i in range(20))
    assert all(p.faces == 3 for p in people)
    embeddings, names = store.labelled_embeddings("toy")
    assert embeddings.shape == (60, 8)
    for row, name in zip(embeddings, names):  # every row belongs to the right person
        assert name == f"person {int(row[0])}"


KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    from core.faces import gallery

    store = gallery.GalleryStore(sys.argv[1])
    for k in range(3):
        store.enroll(f"kept {k}", torch.randn(4, 16), backend="toy")
    real_connect = gallery.GalleryStore._connect

    def dying_connect(self):
        cm = real_connect(self)
        con = cm.__enter__()
        def trace(statement):
            # SIGKILL in the middle of the victim's transaction: its person row is written, its faces not committed
            if statement.startswith("INSERT") and "INTO faces" in statement:
                os.kill(os.getpid(), signal.SIGKILL)
        con.set_trace_callback(trace)
        class Wrapper:
            def __enter__(self_inner):
                return con
            def __exit__(self_inner, *exc):
                return cm.__exit__(*exc)
        return Wrapper()

    gallery.GalleryStore._connect = dying_connect
    store.enroll("victim", torch.randn(4, 16), backend="toy")
    print("not killed")
""")


def test_process_killed_mid_enrollment_leaves_a_readable_gallery(tmp_path):
    path = tmp_path / "g.db"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr  # it really died by SIGKILL
    store = GalleryStore(path)
    assert store.integrity_ok()
    assert [(p.name, p.faces) for p in store.people()] == [("kept 0", 4), ("kept 1", 4), ("kept 2", 4)]
    assert store.labelled_embeddings("toy")[0].shape == (12, 16)
    store.enroll("after the crash", torch.randn(2, 16), backend="toy")  # and it is writable again
    assert len(store.people()) == 4


def test_not_a_database_is_one_sentence(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a usable SQLite database"):
        GalleryStore(bad)


def test_a_face_is_stored_once_and_old_galleries_gain_the_digest(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)  # a gallery made before faces had digests
    con.executescript("""
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
        CREATE TABLE faces (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
                            backend TEXT NOT NULL, dim INTEGER NOT NULL, embedding BLOB NOT NULL, chip BLOB,
                            created REAL NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('revision', 0);
    """)
    con.close()
    store = GalleryStore(path)
    faces = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert store.enroll("Ada", faces, backend="toy") == 2
    assert store.enroll("Ada", faces, backend="toy") == 0  # the same two faces again: a retry
    assert store.enroll("Ada", torch.tensor([[3.0, 4.0], [5.0, 6.0]]), backend="toy") == 1
    assert store.enroll("Ada", faces, backend="other") == 2  # another backend's embedding is another face
    assert store.enroll("Bob", faces[:1], backend="toy") == 1  # the same numbers may belong to two people
    assert [(p.name, p.faces) for p in store.people()] == [("Ada", 5), ("Bob", 1)]


@pytest.mark.parametrize("name", ["A\u202eB", "zero\u200bwidth", "bell\x07", "nul\x00", "line\u2028sep"])
def test_names_refuse_control_invisible_and_direction_characters(name):
    with pytest.raises(UserError, match="invisible"):
        check_name(name)


def test_names_keep_ordinary_letters():
    assert check_name("  José   María\tO'Neil ") == "José María O'Neil"
    assert check_name("李小龍") == "李小龍"


def test_session_galleries_end_idle_and_stale(tmp_path):
    folder = tmp_path / "galleries"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [folder / f"session-{dead.stdout.strip()}-abc.db", folder / f"session-{dead.stdout.strip()}-abc.db-wal",
             folder / "session-k2j3h4.db"]  # a crashed run's files, and the older naming
    for f in stale:
        f.write_bytes(b"x")
    alive = folder / f"session-{os.getppid()}-def.db"  # another running app's session: not ours to delete
    alive.write_bytes(b"x")
    galleries = Galleries(folder, max_idle_s=60)
    assert not any(f.exists() for f in stale) and alive.exists()

    a, b = galleries.store("a"), galleries.store("b")
    a.enroll("Ada", torch.zeros(1, 2), backend="toy")
    # Faces are biometric data: no other account on the host may list the folder or read a file in it.
    assert folder.stat().st_mode & 0o777 == 0o700
    written = [p for p in folder.iterdir() if p.name.startswith(a.path.name)]  # the gallery (-wal, -shm while open)
    assert written and all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    assert galleries.store("a") is a and a.path != b.path and a.path.exists()
    galleries.end("a")
    assert not a.path.exists() and len(galleries) == 1
    b.enroll("Bob", torch.zeros(1, 2), backend="toy")
    assert galleries.sweep_idle(time.monotonic() + 30) == 0 and b.path.exists()
    assert galleries.sweep_idle(time.monotonic() + 61) == 1 and not b.path.exists()
    with pytest.raises(UserError, match="reload"):
        galleries.store(None)


def test_a_deleted_shared_gallery_is_said_once_and_a_session_gallery_starts_afresh_quietly(tmp_path):
    shared = Galleries(shared=tmp_path / "shared.db").store(None)
    shared.enroll("Ada", torch.zeros(1, 2), backend="toy")
    remove_gallery_file(shared.path)
    with pytest.raises(GalleryUnavailable, match="file was deleted on the server, so everyone enrolled"):
        shared.people()
    assert shared.people() == []  # the empty gallery in its place works
    session = Galleries(tmp_path / "sessions").store("a visitor")
    session.enroll("Bob", torch.zeros(1, 2), backend="toy")
    remove_gallery_file(session.path)  # an idle sweep: the visitor's own, and gone by design
    assert session.people() == []


def test_a_gallery_path_under_a_file_is_one_sentence(tmp_path):
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(UserError, match="cannot be created"):
        Galleries(shared=tmp_path / "plain-file" / "gallery.db")


def test_a_stopping_app_leaves_no_session_gallery(tmp_path):
    script = textwrap.dedent("""
        import sys, tempfile, torch
        tempfile.tempdir = sys.argv[1]
        from spaces import face_galleries
        store = face_galleries.galleries().store("a visitor")
        store.enroll("Ada", torch.zeros(1, 2), backend="toy")
        print(store.path)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path) in done.stdout and not list((tmp_path / "cvhub-galleries").glob("session-*"))
