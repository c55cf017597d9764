"""The shared partition directory: what it must guarantee, checked at a core's start, and
the lock that fences a partition's journal to one process.

A partition's journal (and its sinks' cursors, its alarm desk's cursor, its audit log)
moves with the partition's lease by living in ``cluster.partition_dir``, which every core
must see as the same directory. What that directory must give (docs/scaling.md, "The
shared partition directory"):

1. one directory for all cores: checked through :data:`ID_FILE`, a random id the first
   core writes (``O_EXCL``) and every core announces in the lease bucket; a core that sees
   another id refuses partitions (:meth:`hub.cluster.core.Owner.tick`);
2. POSIX advisory locks (``fcntl``) that work between the cores' hosts: a core holds
   ``p<N>/owner.lock`` while the partition's journal is open (:class:`PartitionLock`), so a
   core that lost its lease but has not noticed yet (paused, cut off) and the new owner can
   never both write the journal; checked at start;
3. ``fsync`` of files and directories that reaches stable storage: the journal's commit is
   what the stream's ack waits for; checked at start (that it works, not that it is honest:
   no program can tell);
4. SQLite's WAL mode: the journal uses it. SQLite documents WAL as unsupported on network
   file systems when several hosts open a database *at the same time*; the lock of 2. makes
   access one host at a time, which is the case SQLite's rollback and recovery handle. Use
   a block device attached to one core at a time, or a cluster file system with coherent
   POSIX locks (GFS2, OCFS2, CephFS); not NFS without working ``lockd``, not SMB.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid

ID_FILE = ".hub-cluster-id"


class PartitionDirError(RuntimeError):
    """The partition directory cannot give what cluster mode needs (the message says what
    and where to read more)."""


class PartitionBusy(RuntimeError):
    """Another process holds the partition's lock (its journal is still open there)."""


def check_partition_dir(path: str) -> str:
    """Check ``path`` as a core starts (creating it); the directory's cluster id. Raises
    :class:`PartitionDirError` with what failed."""
    see = "(cluster.partition_dir must be one directory every core sees, with POSIX locks " \
          "and fsync: docs/scaling.md, \"The shared partition directory\")"
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(fd, fcntl.LOCK_UN)
            except OSError as e:
                raise PartitionDirError(f"{path}: POSIX locks do not work here "
                                        f"({os.strerror(e.errno or 0)}) {see}") from None
        finally:
            os.close(fd)
            os.unlink(probe)
        fsync_dir(path)
    except PartitionDirError:
        raise
    except OSError as e:
        raise PartitionDirError(f"{path}: {e.strerror or e} {see}") from None
    return cluster_id(path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cluster_id(path: str) -> str:
    """The directory's id: made once by whichever core comes first."""
    file = os.path.join(path, ID_FILE)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, uuid.uuid4().hex.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path)
    with open(file, encoding="ascii") as f:
        made = f.read().strip()
    if not made:  # a core died between create and write: the next one decides
        os.unlink(file)
        return cluster_id(path)
    return made


class PartitionLock:
    """An exclusive POSIX lock on ``<partition dir>/owner.lock``, held while the partition's
    Hub runs. The kernel (or the file system's lock manager) drops it when the process dies,
    so a kill -9 frees it; a process that is alive but lost its lease keeps it until it
    stops its worker, and the new owner's start fails until then (and is tried again)."""

    def __init__(self, directory: str, holder: str) -> None:
        self.path = os.path.join(directory, "owner.lock")
        self.holder = holder
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            held = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno in (errno.EACCES, errno.EAGAIN):
                raise PartitionBusy(f"{self.path} is held by {held or 'another process'}") \
                    from None
            raise PartitionDirError(f"{self.path}: cannot lock ({e.strerror})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.holder} pid {os.getpid()}".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # closing drops the lock
