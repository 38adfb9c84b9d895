/*
 * blockdev.c - a RAM disk block device and direct I/O
 * (fs/block_dev.c + fs/direct-io.c shaped).
 */
#include "sched.h"
#include "fs.h"

#define RAMDISK_SECTORS	32
#define SECTOR_SIZE	512

static u8 ramdisk_data[RAMDISK_SECTORS * SECTOR_SIZE] __aligned(4096);

struct block_device ram_bdev = {
	.bd_dev = 0x0800,		/* 8:0, sda */
	.bd_name = "sda",
	.bd_block_size = SECTOR_SIZE,
	.bd_blkbits = 9,
	.bd_nr_sectors = RAMDISK_SECTORS,
	.bd_data = ramdisk_data,
};

const struct file_operations def_blk_fops = {
	.name = "def_blk_fops",
	.read = generic_file_read,
	.write = generic_file_write,
};

const struct address_space_operations def_blk_aops = {
	.direct_IO = blkdev_direct_IO,
};

__kfunc void blkdev_init(void)
{
	/* a recognisable "partition table" in sector 0 */
	static const char label[] = "MINIKERNEL RAMDISK v2.6.12";

	memcpy(ramdisk_data, label, sizeof(label));
	for (int i = 64; i < SECTOR_SIZE - 2; i++)
		ramdisk_data[i] = (u8)(i * 7 + 3);
	ramdisk_data[510] = 0x55;
	ramdisk_data[511] = 0xaa;
}

/* fs/block_dev.c: blkdev_get_blocks() - a block device maps 1:1 */
__kfunc int blkdev_get_blocks(struct inode *inode, sector_t iblock,
			      unsigned long max_blocks, struct buffer_head *bh,
			      int create)
{
	struct block_device *bdev = inode->i_bdev;

	(void)create;
	if (iblock >= bdev->bd_nr_sectors)
		return -EIO;
	if (iblock + max_blocks > bdev->bd_nr_sectors)
		max_blocks = bdev->bd_nr_sectors - iblock;
	bh->b_bdev = bdev;
	bh->b_blocknr = iblock;
	bh->b_size = max_blocks << bdev->bd_blkbits;
	bh->b_state = 1;		/* BH_Mapped */
	return 0;
}

/* "submit_bio": move one mapped extent between memory and the disk */
__kfunc void submit_bio(int rw, struct buffer_head *bh, char *mem, size_t len)
{
	struct block_device *bdev = bh->b_bdev;
	u8 *disk = bdev->bd_data + (bh->b_blocknr << bdev->bd_blkbits);

	if (rw == WRITE) {
		memcpy(disk, mem, len);
		bdev->bd_writes++;
	} else {
		memcpy(mem, disk, len);
		bdev->bd_reads++;
	}
}

struct dio {
	int rw;
	struct inode *inode;
	struct block_device *bdev;
	unsigned int blkbits;
	sector_t block_in_file;
	size_t bytes_done;
	int bios_in_flight;
	int lock_type;
	get_blocks_t *get_blocks;
	dio_iodone_t *end_io;
	struct kiocb *iocb;
	u32 csum;
};

/* fs/direct-io.c: dio_await_completion() */
__kfunc void dio_await_completion(struct dio *dio)
{
	while (dio->bios_in_flight) {
		io_schedule();		/* the "DMA" takes one tick */
		dio->bios_in_flight = 0;
	}
}

__kfunc ssize_t __blockdev_direct_IO(int rw, struct kiocb *iocb, struct inode *inode,
				     struct block_device *bdev, const struct iovec *iov,
				     loff_t offset, unsigned long nr_segs, void *get_blocks,
				     void *end_io, int lock_type)
{
	unsigned int blkbits = bdev->bd_blkbits;
	unsigned int blocksize_mask = (1U << blkbits) - 1;
	struct dio dio_store, *dio = &dio_store;
	struct buffer_head map_bh;
	ssize_t ret = 0;

	if (offset & blocksize_mask)
		return -EINVAL;
	for (unsigned long seg = 0; seg < nr_segs; seg++) {
		if ((iov[seg].iov_len & blocksize_mask) ||
		    ((unsigned long)iov[seg].iov_base & 7))
			return -EINVAL;
	}

	memset(dio, 0, sizeof(*dio));
	dio->rw = rw;
	dio->inode = inode;
	dio->bdev = bdev;
	dio->blkbits = blkbits;
	dio->block_in_file = offset >> blkbits;
	dio->lock_type = lock_type;
	dio->get_blocks = (get_blocks_t *)get_blocks;
	dio->end_io = (dio_iodone_t *)end_io;
	dio->iocb = iocb;

	for (unsigned long seg = 0; seg < nr_segs && !ret; seg++) {
		char *mem = iov[seg].iov_base;
		size_t left = iov[seg].iov_len;

		while (left) {
			size_t len;
			int err;

			memset(&map_bh, 0, sizeof(map_bh));
			err = dio->get_blocks(inode, dio->block_in_file, left >> blkbits,
					      &map_bh, rw == WRITE);
			if (err) {
				ret = err;
				break;
			}
			len = map_bh.b_size < left ? map_bh.b_size : left;
			submit_bio(rw, &map_bh, mem, len);
			dio->csum = crc32_le(dio->csum, (const u8 *)mem, len);
			dio->bios_in_flight++;
			dio->bytes_done += len;
			dio->block_in_file += len >> blkbits;
			mem += len;
			left -= len;
		}
	}
	dio_await_completion(dio);
	if (dio->end_io && dio->bytes_done)
		dio->end_io(iocb, offset, dio->bytes_done, iocb ? iocb->private : NULL);
	if (!ret)
		ret = dio->bytes_done;
	return ret;
}

/* fs/block_dev.c */
__kfunc ssize_t blkdev_direct_IO(int rw, struct kiocb *iocb, const struct iovec *iov,
				 loff_t offset, unsigned long nr_segs)
{
	struct inode *inode = iocb->ki_filp->f_dentry->d_inode;

	return __blockdev_direct_IO(rw, iocb, inode, inode->i_bdev, iov, offset, nr_segs,
				    (void *)blkdev_get_blocks, NULL, DIO_NO_LOCKING);
}
