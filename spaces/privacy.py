"""What the app keeps of a visitor, where and for how long: the limits app.py sets, and the words the About
tab shows (the README says the same)."""

from spaces.face_galleries import MAX_IDLE_S

#: Uploads and results (faces among them) leave Gradio's cache within the hour: files older than
#: CACHE_MAX_AGE_S are deleted, checked every CACHE_SWEEP_S.
CACHE_SWEEP_S = 600
CACHE_MAX_AGE_S = 3000
#: An upload above this is refused before it is stored: no panel needs more than a big phone photo.
MAX_UPLOAD_MB = 20

SUMMARY = (
    "## What this app keeps, and for how long\n"
    "- **Your uploads and the pictures it returns** (faces included) sit in the server's temporary cache so your "
    f"browser can show them; they are deleted within {round((CACHE_SWEEP_S + CACHE_MAX_AGE_S) / 60)} minutes. "
    f"Uploads larger than {MAX_UPLOAD_MB} MB are refused.\n"
    "- **Your face gallery** (the names, face embeddings and face crops you enroll) is private to your browser tab "
    f"and deleted when you close or reload the tab, after {round(MAX_IDLE_S / 60)} minutes without use, or when the "
    "app restarts. Nobody else can see it. Only where the operator started the app with `--gallery` is there one "
    "shared, persistent gallery, and the Faces panel then says so.\n"
    "- Nothing else is stored: no log of your pictures, no account.\n\n"
)
