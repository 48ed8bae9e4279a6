#ifndef LLMSPOOL_CSPOOLSHIM_H
#define LLMSPOOL_CSPOOLSHIM_H

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of replacing the target.
/// Falls back to link+unlink where the filesystem does not support the flag (EINVAL; e.g. a FUSE
/// filesystem such as LazyFS mounted directly), which keeps the no-replace guarantee at the cost
/// of a window where both names exist: a crash (or power cut) there leaves one file, nlink 2,
/// under the old and the new name. Recovery drops a dead claim's cur/ name that is the same file
/// as a new/ one; a tmp/ name is only a leftover.
int llmspool_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/// The calling thread's errno (Swift cannot read the macro directly in every configuration).
int llmspool_errno(void);

/// syncfs(2): flush every dirty file of the filesystem holding fd, and wait (errors reported since Linux 5.8).
int llmspool_syncfs(int fd);

/// sync_file_range(fd, 0, 0, WAIT_BEFORE | WRITE | WAIT_AFTER): write the file's dirty pages to the
/// device and wait for them, without fsync's journal commit and cache flush. Not durable by itself:
/// it puts the data ahead of any later journal commit, so a rename made after it never shows an
/// empty or zero-filled file after a power cut.
int llmspool_write_out(int fd);

/// 1 if fd is on a FUSE filesystem (fstatfs type FUSE_SUPER_MAGIC), 0 if not, -1 if fstatfs fails.
int llmspool_is_fuse(int fd);

/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC): a wake-up descriptor for poll().
int llmspool_eventfd(void);

#endif
