/* ops.c: ferryfs's FUSE operations table, its init, and the operations S3 cannot do. */
#include "ferryfs.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

int fs_init_tables(struct fs *fs)
{
	if (node_init_table(fs))
		return -1;
	pthread_mutex_init(&fs->cache_mu, NULL);
	pthread_mutex_init(&fs->bg_mu, NULL);
	pthread_cond_init(&fs->bg_cv, NULL);
	return 0;
}

void fs_release_tables(struct fs *fs)
{
	file_release_handles(fs);
	dir_release_handles(fs);
	node_release_table(fs);
	pthread_mutex_destroy(&fs->cache_mu);
	pthread_cond_destroy(&fs->bg_cv);
	pthread_mutex_destroy(&fs->bg_mu);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_write = FS_MAX_IO;
	conn->max_read = FS_MAX_IO;
	conn->max_readahead = FS_MAX_IO;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	if (conn->capable & FUSE_CAP_WRITEBACK_CACHE)
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);         /* hard links: not on S3 */
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EPERM);         /* devices, fifos, sockets */
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	memset(&sv, 0, sizeof(sv));
	/* S3 has no capacity to report: a large, constant, honest-looking figure */
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = 1ull << 32;           /* 16 TiB */
	sv.f_bfree = sv.f_blocks;
	sv.f_bavail = sv.f_blocks;
	sv.f_files = 1ull << 30;
	sv.f_ffree = sv.f_files;
	sv.f_favail = sv.f_files;
	sv.f_namemax = FS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.fsync = fs_fsync,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.statfs = fs_statfs,
	.setxattr = fs_setxattr,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
	.create = fs_create,
};
