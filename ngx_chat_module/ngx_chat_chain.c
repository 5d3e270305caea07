
/*
 * A node's view of one partition's chain of sections (ngx_chat_chain.h).
 *
 * Each section says where the one before it ended (prev) and where it
 * ends (last). The node delivers a section that continues what it holds,
 * drops one it has delivered before (a publisher that sent twice), and on
 * a section that starts beyond what it holds asks for the gap to be read
 * again from the store, keeping that section and the ones after it until
 * the repair came, so that every session still sees one conversation's
 * messages in order and each once.
 */


#include "ngx_chat_chain.h"


void
ngx_chat_chain_init(ngx_chat_chain_t *chain)
{
    chain->last = -1;
    chain->repair = -1;
    chain->suspect = -1;
}


ngx_chat_chain_rc_e
ngx_chat_chain_section(ngx_chat_chain_t *chain, int64_t prev, int64_t last)
{
    if (last <= chain->last) {
        return NGX_CHAT_CHAIN_DROP;
    }

    if (chain->repair >= 0) {
        return NGX_CHAT_CHAIN_HOLD;
    }

    if (prev > chain->last) {
        chain->repair = prev;
        chain->suspect = -1;
        return NGX_CHAT_CHAIN_GAP;
    }

    /*
     * prev < last held: the section overlaps what was delivered, which a
     * fenced publisher would not send; delivering it may repeat a frame,
     * holding it would lose others
     */

    chain->last = last;

    if (chain->suspect <= last) {
        chain->suspect = -1;
    }

    return NGX_CHAT_CHAIN_DELIVER;
}


ngx_chat_chain_rc_e
ngx_chat_chain_repaired(ngx_chat_chain_t *chain, int64_t after, int64_t upto)
{
    if (chain->repair < 0 || after != chain->last || upto < chain->repair) {
        return NGX_CHAT_CHAIN_DROP;
    }

    chain->last = upto;
    chain->repair = -1;

    if (chain->suspect <= upto) {
        chain->suspect = -1;
    }

    return NGX_CHAT_CHAIN_DELIVER;
}


ngx_chat_chain_rc_e
ngx_chat_chain_audit(ngx_chat_chain_t *chain, int64_t head)
{
    if (head <= chain->last || chain->repair >= 0) {
        chain->suspect = -1;
        return NGX_CHAT_CHAIN_DELIVER;
    }

    if (chain->suspect < 0) {
        chain->suspect = head;
        return NGX_CHAT_CHAIN_DELIVER;
    }

    /* what the earlier audit saw has still not come */
    chain->repair = chain->suspect;
    chain->suspect = -1;

    return NGX_CHAT_CHAIN_GAP;
}


ngx_chat_chain_rc_e
ngx_chat_chain_retry(ngx_chat_chain_t *chain)
{
    return chain->repair >= 0 ? NGX_CHAT_CHAIN_GAP : NGX_CHAT_CHAIN_DROP;
}


void
ngx_chat_chain_give_up(ngx_chat_chain_t *chain, int64_t upto)
{
    if (upto > chain->last) {
        chain->last = upto;
    }

    chain->repair = -1;
    chain->suspect = -1;
}
