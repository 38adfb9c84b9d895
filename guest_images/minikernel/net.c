/*
 * net.c - the IPv4 output path (net/ipv4/ip_output.c, net/core/dev.c,
 * net/core/skbuff.c, drivers/net/loopback.c shaped).
 */
#include "sched.h"
#include "net.h"

#define NR_SKBS		8
#define SKB_DATA_SIZE	256

static struct sk_buff skb_pool[NR_SKBS];
static unsigned char skb_data[NR_SKBS][SKB_DATA_SIZE] __aligned(64);
static spinlock_t skb_lock = SPIN_LOCK_UNLOCKED;
static spinlock_t xmit_lock = SPIN_LOCK_UNLOCKED;

int loopback_xmit(struct sk_buff *skb, struct net_device *dev);
int eth_xmit(struct sk_buff *skb, struct net_device *dev);
int ip_output(struct sk_buff *skb);

struct net_device loopback_dev = {
	.name = "lo",
	.mtu = 16436,
	.hard_start_xmit = loopback_xmit,
};

struct net_device eth0_dev = {
	.name = "eth0",
	.mtu = 1500,
	.hard_start_xmit = eth_xmit,
};

/* The routing table: 127/8 -> lo, 10.0.0/24 -> eth0, nothing else. */
static struct rtable rt_table[] = {
	{ { &loopback_dev, ip_output, 1, 0 }, IPV4(127, 0, 0, 0), IPV4(255, 0, 0, 0),
	  IPV4(127, 0, 0, 1), 0 },
	{ { &eth0_dev, ip_output, 1, 0 }, IPV4(10, 0, 0, 0), IPV4(255, 255, 255, 0),
	  IPV4(10, 0, 0, 1), 0 },
};

__kfunc void net_init(void)
{
	for (int i = 0; i < NR_SKBS; i++)
		skb_pool[i].in_use = 0;
}

__kfunc struct sk_buff *alloc_skb(unsigned int size, gfp_t gfp)
{
	struct sk_buff *skb = NULL;
	unsigned long flags;

	(void)gfp;
	if (size > SKB_DATA_SIZE)
		return NULL;
	spin_lock_irqsave(&skb_lock, flags);
	for (int i = 0; i < NR_SKBS; i++) {
		if (!skb_pool[i].in_use) {
			skb = &skb_pool[i];
			memset(skb, 0, sizeof(*skb));
			skb->in_use = 1;
			skb->head = skb->data = skb->tail = skb_data[i];
			skb->end = skb_data[i] + SKB_DATA_SIZE;
			break;
		}
	}
	spin_unlock_irqrestore(&skb_lock, flags);
	return skb;
}

__kfunc void kfree_skb(struct sk_buff *skb)
{
	unsigned long flags;

	if (!skb)
		return;
	if (skb->dst)
		skb->dst->refcnt--;
	spin_lock_irqsave(&skb_lock, flags);
	skb->in_use = 0;
	spin_unlock_irqrestore(&skb_lock, flags);
}

void skb_reserve(struct sk_buff *skb, unsigned int len)
{
	skb->data += len;
	skb->tail += len;
}

unsigned char *skb_put(struct sk_buff *skb, unsigned int len)
{
	unsigned char *tmp = skb->tail;

	skb->tail += len;
	skb->len += len;
	BUG_ON(skb->tail > skb->end);
	return tmp;
}

unsigned char *skb_push(struct sk_buff *skb, unsigned int len)
{
	skb->data -= len;
	skb->len += len;
	BUG_ON(skb->data < skb->head);
	return skb->data;
}

/* Internet checksum over ihl 32-bit words */
__kfunc u16 ip_fast_csum(const void *iph, unsigned int ihl)
{
	const u16 *p = iph;
	u32 sum = 0;

	for (unsigned int i = 0; i < ihl * 2; i++)
		sum += p[i];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (u16)~sum;
}

__kfunc struct rtable *ip_route_output(u32 daddr, u32 saddr)
{
	(void)saddr;
	for (unsigned int i = 0; i < ARRAY_SIZE(rt_table); i++) {
		if ((daddr & rt_table[i].rt_mask) == rt_table[i].rt_dst) {
			rt_table[i].dst.refcnt++;
			return &rt_table[i];
		}
	}
	return NULL;
}

/* drivers/net/loopback.c */
__kfunc int loopback_xmit(struct sk_buff *skb, struct net_device *dev)
{
	dev->stats.tx_packets++;
	dev->stats.tx_bytes += skb->len;
	dev->stats.rx_packets++;	/* netif_rx(): it comes straight back */
	kfree_skb(skb);
	return 0;
}

/* an Ethernet NIC: "DMA" the frame and compute its FCS */
__kfunc int eth_xmit(struct sk_buff *skb, struct net_device *dev)
{
	dev->fcs_last = ~crc32_le(~0U, skb->data, skb->len);
	dev->stats.tx_packets++;
	dev->stats.tx_bytes += skb->len;
	kfree_skb(skb);
	return 0;
}

/* net/core/dev.c */
__kfunc int dev_queue_xmit(struct sk_buff *skb)
{
	struct net_device *dev = skb->dev;
	unsigned long flags;
	int rc;

	cond_resched();			/* qdisc_run() may yield */
	spin_lock_irqsave(&xmit_lock, flags);
	rc = dev->hard_start_xmit(skb, dev);
	spin_unlock_irqrestore(&xmit_lock, flags);
	return rc;
}

__kfunc int ip_finish_output(struct sk_buff *skb)
{
	skb->dev = skb->dst->dev;
	skb->protocol = htons(ETH_P_IP);
	return dev_queue_xmit(skb);
}

__kfunc int ip_output(struct sk_buff *skb)
{
	if (skb->len > skb->dst->dev->mtu) {
		kfree_skb(skb);
		return -EINVAL;		/* no fragmentation in the minikernel */
	}
	return ip_finish_output(skb);
}

static int dst_output(struct sk_buff *skb)
{
	return skb->dst->output(skb);
}

/* net/ipv4/ip_output.c */
__kfunc int ip_queue_xmit(struct sk_buff *skb, int ipfragok)
{
	struct sock *sk = skb->sk;
	struct rtable *rt;
	struct iphdr *iph;

	rt = (struct rtable *)sk->sk_dst_cache;
	if (!rt) {
		rt = ip_route_output(sk->daddr, sk->saddr);
		if (!rt)
			goto no_route;
		sk->sk_dst_cache = &rt->dst;
	}
	skb->dst = &rt->dst;
	rt->dst.refcnt++;

	iph = (struct iphdr *)skb_push(skb, sizeof(struct iphdr));
	iph->ihl_version = (4 << 4) | 5;
	iph->tos = sk->tos;
	iph->tot_len = htons(skb->len);
	iph->frag_off = ipfragok ? 0 : htons(IP_DF);
	iph->ttl = 64;
	iph->protocol = sk->protocol;
	iph->saddr = htonl(rt->rt_src);
	iph->daddr = htonl(sk->daddr);
	iph->id = htons(sk->id++);
	iph->check = 0;
	iph->check = ip_fast_csum(iph, 5);
	skb->nh.iph = iph;
	skb->priority = sk->sk_priority;

	return dst_output(skb);

no_route:
	kfree_skb(skb);
	return -EHOSTUNREACH;
}

/* net/ipv4/tcp_output.c: tcp_transmit_skb() (header building elided) */
__kfunc int tcp_transmit_skb(struct sock *sk, struct sk_buff *skb)
{
	skb->sk = sk;
	return ip_queue_xmit(skb, 0);
}
