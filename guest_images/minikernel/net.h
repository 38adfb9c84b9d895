/*
 * net.h - sk_buff, sockets, routes and network devices: just enough of
 * the Linux 2.6 IPv4 output path to drive ip_queue_xmit().
 */
#ifndef _MK_NET_H
#define _MK_NET_H

#include "kernel.h"

struct sk_buff;
struct net_device;

struct iphdr {
	u8 ihl_version;			/* ihl:4 (low), version:4 (high) */
	u8 tos;
	u16 tot_len;
	u16 id;
	u16 frag_off;
	u8 ttl;
	u8 protocol;
	u16 check;
	u32 saddr;
	u32 daddr;
};

struct net_device_stats {
	unsigned long tx_packets, tx_bytes, tx_errors, rx_packets;
};

struct net_device {
	char name[16];
	unsigned int mtu;
	u32 fcs_last;
	int (*hard_start_xmit)(struct sk_buff *skb, struct net_device *dev);
	struct net_device_stats stats;
};

struct dst_entry {
	struct net_device *dev;
	int (*output)(struct sk_buff *skb);
	int refcnt;
	int error;
};

struct rtable {
	struct dst_entry dst;		/* must be first */
	u32 rt_dst, rt_mask, rt_src, rt_gateway;
};

struct sock {
	u32 saddr, daddr;
	u16 sport, dport;
	u8 protocol;
	u8 tos;
	u16 id;
	u32 sk_priority;
	struct dst_entry *sk_dst_cache;
};

struct sk_buff {
	struct sk_buff *next;
	struct sock *sk;
	struct net_device *dev;
	struct dst_entry *dst;
	unsigned int len;
	unsigned int data_len;
	u16 protocol;
	u8 pkt_type;
	u8 ip_summed;
	u32 priority;
	union { struct iphdr *iph; unsigned char *raw; } nh;
	unsigned char *head, *data, *tail, *end;
	char cb[48];
	int in_use;
};

#define IPPROTO_TCP	6
#define IPPROTO_UDP	17
#define IP_DF		0x4000
#define ETH_P_IP	0x0800

static inline u16 htons(u16 x) { return (u16)((x << 8) | (x >> 8)); }
static inline u32 htonl(u32 x) { return __builtin_bswap32(x); }
#define ntohs htons
#define ntohl htonl
#define IPV4(a, b, c, d) (((u32)(a) << 24) | ((u32)(b) << 16) | ((u32)(c) << 8) | (u32)(d))

void net_init(void);
struct sk_buff *alloc_skb(unsigned int size, gfp_t gfp);
void kfree_skb(struct sk_buff *skb);
unsigned char *skb_put(struct sk_buff *skb, unsigned int len);
unsigned char *skb_push(struct sk_buff *skb, unsigned int len);
void skb_reserve(struct sk_buff *skb, unsigned int len);
int ip_queue_xmit(struct sk_buff *skb, int ipfragok);
int tcp_transmit_skb(struct sock *sk, struct sk_buff *skb);
int dev_queue_xmit(struct sk_buff *skb);
u16 ip_fast_csum(const void *iph, unsigned int ihl);
extern struct net_device loopback_dev, eth0_dev;

#endif
