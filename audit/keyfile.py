"""The audit key, read at settings load (no Django imports here: flagsite/settings.py calls it).

FLAGS_AUDIT_KEY (the key itself) or FLAGS_AUDIT_KEY_FILE (a file holding it). Without either, the
embedded run generates one once into artifacts/audit.key (mode 600, git-ignored) and keeps using it;
FLAGS_PRODUCTION refuses to start instead: a key generated inside a container dies with it.
"""

import os
import secrets
from pathlib import Path

MIN_KEY_LENGTH = 32


class AuditKeyError(Exception):
    """One line, printed by settings as "flagsite: refusing to start: ..."."""


def _read(path):
    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise AuditKeyError(f"cannot read FLAGS_AUDIT_KEY_FILE {path}: {exc.strerror}") from None
    if len(key) < MIN_KEY_LENGTH:
        raise AuditKeyError(f"the audit key in {path} is shorter than {MIN_KEY_LENGTH} characters")
    return key


def _generate_once(path):
    """Write a new key to path unless one is there. Link-then-read: two processes starting at once
    both end up with the same key, and no reader ever sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)  # atomic, fails if another process got there first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return _read(path)


def load_audit_key(environ, *, production, default_path):
    key = environ.get("FLAGS_AUDIT_KEY", "").strip()
    key_file = environ.get("FLAGS_AUDIT_KEY_FILE", "").strip()
    if key and key_file:
        raise AuditKeyError("set FLAGS_AUDIT_KEY or FLAGS_AUDIT_KEY_FILE, not both")
    if key:
        if len(key) < MIN_KEY_LENGTH:
            raise AuditKeyError(f"FLAGS_AUDIT_KEY must be {MIN_KEY_LENGTH}+ random characters")
        return key
    if key_file:
        return _read(key_file)
    if production:
        raise AuditKeyError(f"set FLAGS_AUDIT_KEY ({MIN_KEY_LENGTH}+ random characters) or FLAGS_AUDIT_KEY_FILE "
                            "when FLAGS_PRODUCTION=true (kept outside the database)")
    return _generate_once(Path(default_path))
