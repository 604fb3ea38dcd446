/*
 * The request loop every queue whose chains are answered at once shares
 * (virtio-net's and virtio-vsock's transmit queues, virtio-rng): see
 * virtio_queue_serve() in virtio.h. Runs wherever the device's
 * queue_notify() runs, under the transport's lock.
 */
#include "dev/virtio.h"

unsigned virtio_queue_serve(struct virtio_dev *vd, unsigned q, struct vq_chain *chain,
			    unsigned budget, const char *what,
			    uint32_t (*serve)(void *ctx, struct vq_chain *chain), void *ctx)
{
	struct vq *vq = virtio_queue(vd, q);
	if (!vq)
		return 0;
	unsigned served = 0;
	enum vq_pop_result r = VQ_EMPTY;
	do {
		vq_enable_notify(vq, false);
		while ((budget == 0 || served < budget) && (r = vq_pop(vq, chain)) == VQ_CHAIN) {
			vq_push(vq, chain->head, serve(ctx, chain));
			served++;
		}
	} while (r == VQ_EMPTY && vq_enable_notify(vq, true));
	if (served)
		virtio_queue_interrupt(vd, q);
	/* The budget is spent: come back if the ring is not (as the loop would);
	 * notifications stay off meanwhile, the driver need not kick. */
	if (r == VQ_CHAIN && (vq_has_avail(vq) || vq_enable_notify(vq, true)))
		virtio_queue_notify_later(vd, q);
	if (r == VQ_BROKEN)
		virtio_needs_reset(vd, vq->why_broken ? vq->why_broken : what);
	return served;
}
