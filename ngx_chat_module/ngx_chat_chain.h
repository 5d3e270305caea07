
/*
 * The chain of one partition's sections to one node (ngx_chat_wire.h, the
 * P and R records), as the node follows it: which section to deliver,
 * which is a copy of one already delivered, which must wait for a repair,
 * and when a gap needs one. Plain C, no nginx types: the unit tests and a
 * fuzzer drive it.
 */


#ifndef _NGX_CHAT_CHAIN_H_INCLUDED_
#define _NGX_CHAT_CHAIN_H_INCLUDED_


#include <stdint.h>


typedef struct {
    int64_t       last;         /* delivered up to this offset; -1 none */
    int64_t       repair;       /* a repair asked up to here; -1 none */
    int64_t       suspect;      /* a head an audit saw beyond last; -1 */
} ngx_chat_chain_t;


typedef enum {
    NGX_CHAT_CHAIN_DELIVER = 0, /* deliver it: last moved */
    NGX_CHAT_CHAIN_DROP,        /* delivered before: drop it */
    NGX_CHAT_CHAIN_HOLD,        /* a repair is due first: keep it */
    NGX_CHAT_CHAIN_GAP          /* keep it and ask a repair of
                                 * (last, repair] */
} ngx_chat_chain_rc_e;


void ngx_chat_chain_init(ngx_chat_chain_t *chain);

/* a section that follows prev and ends at last */
ngx_chat_chain_rc_e ngx_chat_chain_section(ngx_chat_chain_t *chain,
    int64_t prev, int64_t last);

/* a repair of (after, upto]: DELIVER (then the held sections, in order)
 * or DROP */
ngx_chat_chain_rc_e ngx_chat_chain_repaired(ngx_chat_chain_t *chain,
    int64_t after, int64_t upto);

/*
 * An audit saw the publishers' head at head: a head beyond last at two
 * audits in a row (the section may have been on its way the first time)
 * is a gap (GAP, with the repair's range), else DELIVER (nothing to do).
 */
ngx_chat_chain_rc_e ngx_chat_chain_audit(ngx_chat_chain_t *chain,
    int64_t head);

/* a repair that did not come: ask for it again (GAP) */
ngx_chat_chain_rc_e ngx_chat_chain_retry(ngx_chat_chain_t *chain);

/* give up on the gap: what is held is delivered, last moves past it */
void ngx_chat_chain_give_up(ngx_chat_chain_t *chain, int64_t upto);


#endif /* _NGX_CHAT_CHAIN_H_INCLUDED_ */
