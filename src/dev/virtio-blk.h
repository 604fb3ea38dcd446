/*
 * virtio-blk (virtio 1.2, section 5.2): a disk image seen by the guest as a
 * block device on one request queue. The transport (dev/virtio-pci.c) owns
 * the queue and calls the device through virtio_blk_ops; this file only
 * says how to make a device from a disk definition.
 *
 * Requests are served by worker threads or io_uring rings and complete out
 * of order: the device makes its queue's wake fd readable when some are
 * done, and the transport then calls queue_notify() to return them (see
 * virtio-blk.c and dev/virtio.h).
 *
 * Creating a device opens the image through the block layer, which locks
 * every file of its chain (block/lock.h), so that an image another VM or
 * program has open for writing is refused instead of being corrupted by
 * two writers, and which opens backing files only inside the directories
 * the disk allows (block_open_opts.backing_dirs).
 */
#ifndef SHOJI_DEV_VIRTIO_BLK_H
#define SHOJI_DEV_VIRTIO_BLK_H

#include <stdbool.h>

#include "dev/virtio.h"
#include "hv/mem.h"

/* Length of the serial the driver reads with VIRTIO_BLK_T_GET_ID. */
#define VIRTIO_BLK_ID_BYTES 20

/* Feature bits (virtio 1.2, 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values (virtio 1.2, 5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_GET_LIFETIME 10
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_T_SECURE_ERASE 14

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u

#define VIRTIO_BLK_SECTOR_SIZE 512u
#define VIRTIO_BLK_REQ_HDR_BYTES 16u
#define VIRTIO_BLK_DISCARD_SEG_BYTES 16u

/* What the device offers in its configuration space. */
#define VIRTIO_BLK_SEG_MAX          (VQ_MAX_SEGS - 2)   /* header and status take two */
#define VIRTIO_BLK_MAX_DISCARD_SEG  32u
/* Sectors one DISCARD or WRITE_ZEROES request may cover, all its segments
 * together (Linux takes max_discard_sectors and max_write_zeroes_sectors
 * as per-request limits): 1 GiB. Where the file system cannot zero a range
 * the zeros are written, so this bounds what one request costs; without it
 * a request could ask for 32 segments of 2 GiB. */
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 21)
#define VIRTIO_BLK_DISCARD_ALIGNMENT 8u                 /* sectors: 4 KiB */
#define VIRTIO_BLK_QUEUE_SIZE       256

/* Offsets in the device configuration space (struct virtio_blk_config of
 * the spec, up to write_zeroes_may_unmap). */
#define VIRTIO_BLK_CFG_CAPACITY             0
#define VIRTIO_BLK_CFG_SEG_MAX              12
#define VIRTIO_BLK_CFG_BLK_SIZE             20
#define VIRTIO_BLK_CFG_NUM_QUEUES           34
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS  36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG      40
#define VIRTIO_BLK_CFG_DISCARD_ALIGNMENT    44
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS       48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG           52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP         56
#define VIRTIO_BLK_CONFIG_SIZE              60

/* How reads and writes reach the image (--disk ...,aio=). */
enum virtio_blk_aio {
	VIRTIO_BLK_AIO_AUTO,     /* io_uring for raw images where the host allows, else threads */
	VIRTIO_BLK_AIO_THREADS,  /* the worker threads only */
	VIRTIO_BLK_AIO_IO_URING, /* io_uring, or refuse to start */
};

#define VIRTIO_BLK_MAX_BACKING_DIRS 4

/* A disk as the user defined it (see vmm/disk-option.h). */
struct virtio_blk_config {
	const char *path;
	const char *format;   /* "raw" or "qcow2"; never probed */
	bool read_only;
	const char *serial;   /* NULL or up to VIRTIO_BLK_ID_BYTES bytes */
	bool direct;          /* O_DIRECT: bypass the host page cache */
	enum virtio_blk_aio aio;
	/* Where backing files may lie, NULL-terminated; none given means the
	 * image's own directory. The image names its backing files, and a
	 * hostile image must not reach any other host file. */
	const char *backing_dirs[VIRTIO_BLK_MAX_BACKING_DIRS + 1];
};

struct virtio_blk;

/* The ops table the transport drives; `dev` is a struct virtio_blk. */
extern const struct virtio_device_ops virtio_blk_ops;

/*
 * Locks and opens the image. On failure logs one line naming the file and
 * returns NULL.
 */
struct virtio_blk *virtio_blk_create(const struct virtio_blk_config *cfg,
				     const struct guest_mem *mem);
/* Waits for the requests in flight to finish, joins the worker threads,
 * flushes, closes and unlocks the image. Accepts NULL. */
void virtio_blk_destroy(struct virtio_blk *blk);

/*
 * Waits until every request handed to the workers has been served; the next
 * queue_notify() returns them all to the driver at once. For simulated
 * drivers (tests, fuzzer, benchmark) that need a settled device; the VMM
 * never waits for the disk like this.
 */
void virtio_blk_drain(struct virtio_blk *blk);

#endif
