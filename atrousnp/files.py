"""Files that are written atomically, and read back with errors that name them.

A file is written to a temporary in the same folder, flushed to disk, then renamed over the
target: a crash mid-write leaves the previous file as it was, never half of a new one. The
temporary's name holds the target, host and process (``.metrics.json.host-123.tmp-x1y2``), so
the next write of the same target removes what a killed process left, and nothing a live one
is writing.
"""

import json
import os
import socket
import tempfile
from pathlib import Path


def write_atomically(path, write, suffix=""):
    """Create ``path`` through ``write(f)`` on a binary file object, all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temporary_prefix(path)}{os.getpid()}.tmp-",
                                   suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; ours are not
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_json(path, obj):
    """Write ``obj`` as indented JSON to ``path``, atomically."""
    text = json.dumps(obj, indent=2).encode()
    write_atomically(path, lambda f: f.write(text))


def load_json(path):
    """The JSON in ``path``; a ValueError naming the file if it is not JSON (a truncated write
    of an older version, or another program's file)."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it, or restore it from a copy") from None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_prefix(path):
    """What every temporary of ``path`` written on this host begins with; the process id follows."""
    return f".{path.name}.{socket.gethostname()}-"


def _remove_stale_temporaries(path):
    """Delete temporaries of ``path`` left by processes of this host that no longer run."""
    if os.name != "posix":  # os.kill(pid, 0) probes a process only on POSIX; Windows would end it
        return
    prefix = _temporary_prefix(path)
    for leftover in path.parent.iterdir():
        pid = leftover.name[len(prefix):].split(".tmp-")[0]
        if leftover.name.startswith(prefix) and pid.isdigit() and not _running(int(pid)):
            leftover.unlink(missing_ok=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True
