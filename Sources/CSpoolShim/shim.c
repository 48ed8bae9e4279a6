#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "CSpoolShim.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

int llmspool_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    long rc = syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE);
    if (rc == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    /* Filesystem without RENAME_NOREPLACE: link refuses to replace, then drop the old name. */
    if (linkat(olddirfd, oldpath, newdirfd, newpath, 0) != 0) return -1;
    if (unlinkat(olddirfd, oldpath, 0) != 0) return -1;
    return 0;
}

int llmspool_errno(void) { return errno; }

#include <sys/eventfd.h>
int llmspool_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int llmspool_syncfs(int fd) { return syncfs(fd); }

int llmspool_write_out(int fd) {
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}

int llmspool_is_fuse(int fd) {
    struct statfs st;
    if (fstatfs(fd, &st) != 0) return -1;
    return st.f_type == 0x65735546 ? 1 : 0; /* FUSE_SUPER_MAGIC */
}
