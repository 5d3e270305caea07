/*
 * worker_members.h: the membership cache, conversation -> members
 * (worker_members.c), which spares PostgreSQL the question on every send,
 * receipt and typing record.
 */

#ifndef CHAT_WORKER_MEMBERS_H
#define CHAT_WORKER_MEMBERS_H

#include "worker_util.h"


typedef struct {
    char     *user;
    bool      admin;
    int64_t   joined_seq;       /* the event that added it */
    int64_t   removed_seq;      /* the event that removed it; -1: current */
} chat_member_t;

/* a current membership, direct or group */
typedef struct {
    const char  *user;
    const char  *conv;
} chat_membership_t;

/* a conversation's members, current and past; none: no such group */
typedef struct {
    char           *conv;
    chat_member_t  *members;
    size_t          n;
} chat_members_t;

typedef struct {
    chat_members_t  **groups;
    size_t            n;
    size_t            cap;
    chat_map_t        index;    /* conv -> groups[]; keys are groups' convs */
    void            **retired;  /* member lists replaced during a batch */
    size_t            nretired;
    size_t            retired_cap;
} chat_members_cache_t;

chat_members_t *chat_members_find(chat_members_cache_t *c, const char *conv);
/* replaces conv's entry with a copy of members; what the old entry held
 * stays valid until chat_members_release (the outbox borrows it) */
chat_members_t *chat_members_set(chat_members_cache_t *c, const char *conv,
    const chat_member_t *members, size_t n);
void chat_members_release(chat_members_cache_t *c);
void chat_members_clear(chat_members_cache_t *c);

/* the member's entry, current or past, or NULL */
const chat_member_t *chat_members_get(const chat_members_t *g,
    const char *user);
/* a current member? */
bool chat_members_has(const chat_members_t *g, const char *user);
/* the current members */
size_t chat_members_count(const chat_members_t *g);


#endif /* CHAT_WORKER_MEMBERS_H */
