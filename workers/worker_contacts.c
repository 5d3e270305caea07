/*
 * worker_contacts.c: who shares a conversation with whom, for presence.
 * The nginx nodes show a user's presence only to users whose sets of
 * conversations (chat:convs:<user>) meet its own. The batches keep those
 * sets as memberships change (worker_fanout.c, worker_redis.c); a Redis
 * that lost its data has none, and nobody sees anybody until one worker,
 * the one that claims the job, has written every current membership again
 * and set the mark that says the sets are whole.
 *
 * Each group's set of members (chat:members:<conv>), from which the nodes
 * pass typing on, is written alongside, and has a mark of its own that
 * the claim asks for too: a Redis that has the sets of conversations but
 * not yet those of members gets them all written again once.
 *
 * The users' sets of blocked users (chat:blocks:<user>, which hide a
 * blocker's presence from whom it blocks) go the same way, after the
 * memberships and before the mark.
 *
 * A membership that ends while the sets are written again may be written
 * back from a page read just before: that user then stays the other's
 * contact until either's next change of membership, a narrow and
 * harmless window next to the whole of presence going dark.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker_contacts.h"


#define CHAT_CONTACTS_LOOK_MS  5000
#define CHAT_CONTACTS_PAGE     2000


void
chat_contacts_init(chat_contacts_t *c)
{
    char  host[48];

    memset(c, 0, sizeof(*c));

    if (gethostname(host, sizeof(host)) != 0) {
        strcpy(host, "worker");
    }

    host[sizeof(host) - 1] = '\0';
    snprintf(c->writer, sizeof(c->writer), "%s:%ld", host, (long) getpid());
}


static void
chat_contacts_from(chat_contacts_t *c, const char *user, const char *conv)
{
    free(c->after_user);
    free(c->after_conv);
    c->after_user = chat_strdup(user);
    c->after_conv = chat_strdup(conv);
}


void
chat_contacts_tick(chat_contacts_t *c, chat_store_t *st, chat_redis_t *r,
    int64_t now)
{
    chat_membership_t  *rows;
    chat_arena_t        arena = { 0 };
    size_t              n;
    bool                last;

    if (!c->writing && now < c->next_look) {
        return;
    }

    c->next_look = now + CHAT_CONTACTS_LOOK_MS;

    switch (chat_redis_contacts_claim(r, c->writer)) {

    case CHAT_REDIS_CONTACTS_START:
        log_info("conversation sets: writing them again from the store");
        chat_contacts_from(c, "", "");
        c->writing = true;
        c->blocks = false;
        break;

    case CHAT_REDIS_CONTACTS_GO_ON:
        if (c->writing) {
            break;
        }

        /* a claim of this worker's that it forgot (it restarted): again */
        chat_contacts_from(c, "", "");
        c->writing = true;
        c->blocks = false;
        break;

    default:
        c->writing = false;
        return;
    }

    rows = chat_alloc(CHAT_CONTACTS_PAGE * sizeof(chat_membership_t));

    if (chat_store_memberships(st, c->blocks, c->after_user, c->after_conv,
                               rows, CHAT_CONTACTS_PAGE, &n, &arena)
        != CHAT_STORE_OK)
    {
        goto done;
    }

    /* the memberships, then the blocks; the mark after both */
    last = n < CHAT_CONTACTS_PAGE && c->blocks;

    if (!chat_redis_contacts_write(r, rows, n, c->blocks, last)) {
        /* claimed again later, from the start if the claim was lost */
        c->writing = false;
        goto done;
    }

    if (last) {
        log_info("conversation sets: whole again");
        c->writing = false;

    } else if (n < CHAT_CONTACTS_PAGE) {
        c->blocks = true;
        chat_contacts_from(c, "", "");

    } else {
        chat_contacts_from(c, rows[n - 1].user, rows[n - 1].conv);
    }

done:

    free(rows);
    chat_arena_free(&arena);
}


void
chat_contacts_free(chat_contacts_t *c)
{
    free(c->after_user);
    free(c->after_conv);
    c->after_user = NULL;
    c->after_conv = NULL;
}
