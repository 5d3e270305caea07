
/*
 * libFuzzer target: the node payload parser (ngx_chat_wire_record_next and
 * ngx_chat_wire_sids_next), the reader of everything the workers publish
 * to an nginx worker process.
 *
 * The input is the payload. Checked:
 *   - every record lies inside the input, its body right after its header
 *     and the next record right after its body;
 *   - every sid handed out is a valid sid inside the record's header;
 *   - a payload of records written back by ngx_chat_wire_record_header from
 *     what was read parses to the same records (type, sids, body).
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_chat_wire.h"


#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_payload: %s:%d: assertion failed: %s\n",    \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


#define FUZZ_RECORDS  64
#define FUZZ_SIDS     64


typedef struct {
    int           type;
    const char   *sids[FUZZ_SIDS];
    size_t        nsids;
    const char   *body;
    size_t        body_len;
} fuzz_record_t;


/* the records of a payload, -1 at the first malformed one */
static int
fuzz_read(const char *p, const char *end, fuzz_record_t *recs, size_t *n)
{
    int                      rc, src;
    const char              *pos, *s, *send, *sid, *start;
    ngx_chat_wire_record_t   rec;

    pos = p;
    *n = 0;

    for ( ;; ) {
        start = pos;
        rc = ngx_chat_wire_record_next(&pos, end, &rec);

        if (rc != 1) {
            FUZZ_ASSERT(pos == start);
            FUZZ_ASSERT(rc == -1 || pos == end);
            return rc;
        }

        FUZZ_ASSERT(rec.type == (unsigned char) start[0]);
        FUZZ_ASSERT(rec.args >= start && rec.args + rec.args_len < rec.body);
        FUZZ_ASSERT(rec.body[-1] == '\n');
        FUZZ_ASSERT(rec.body + rec.body_len == pos && pos <= end);
        FUZZ_ASSERT(memchr(rec.args, '\n', rec.args_len) == NULL);

        s = rec.args;
        send = rec.args + rec.args_len;

        if (*n < FUZZ_RECORDS) {
            recs[*n].type = rec.type;
            recs[*n].nsids = 0;
            recs[*n].body = rec.body;
            recs[*n].body_len = rec.body_len;
        }

        while ((src = ngx_chat_wire_sids_next(&s, send, &sid)) == 1) {
            FUZZ_ASSERT(sid >= rec.args
                        && sid + NGX_CHAT_WIRE_SID_LEN <= send);
            FUZZ_ASSERT(ngx_chat_wire_valid_sid(sid, NGX_CHAT_WIRE_SID_LEN));

            if (*n < FUZZ_RECORDS && recs[*n].nsids < FUZZ_SIDS) {
                recs[*n].sids[recs[*n].nsids++] = sid;
            }
        }

        if (src == -1 && *n < FUZZ_RECORDS) {
            recs[*n].nsids = FUZZ_SIDS + 1;     /* not written back */
        }

        (*n)++;
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc;
    char           *out, *p;
    size_t          n, m, i, k, room;
    fuzz_record_t   recs[FUZZ_RECORDS], again[FUZZ_RECORDS];

    rc = fuzz_read((const char *) data, (const char *) data + size, recs, &n);

    FUZZ_ASSERT(rc == 0 || rc == -1);

    if (n > FUZZ_RECORDS) {
        n = FUZZ_RECORDS;
    }

    /* the well-formed records, written again, read the same */

    room = 0;
    for (i = 0; i < n; i++) {
        if (recs[i].nsids <= FUZZ_SIDS) {
            room += ngx_chat_wire_record_header_size(recs[i].nsids,
                                                     recs[i].body_len)
                    + recs[i].body_len;
        }
    }

    out = malloc(room + 1);
    FUZZ_ASSERT(out != NULL);
    p = out;

    for (i = 0, m = 0; i < n; i++) {
        if (recs[i].nsids > FUZZ_SIDS) {
            continue;
        }

        p = ngx_chat_wire_record_header(p, recs[i].type, recs[i].sids,
                                        recs[i].nsids, recs[i].body_len);
        memcpy(p, recs[i].body, recs[i].body_len);
        p += recs[i].body_len;
        recs[m++] = recs[i];
    }

    FUZZ_ASSERT((size_t) (p - out) <= room);

    rc = fuzz_read(out, p, again, &k);

    FUZZ_ASSERT(rc == 0 && k == m);

    for (i = 0; i < m; i++) {
        FUZZ_ASSERT(again[i].type == recs[i].type);
        FUZZ_ASSERT(again[i].nsids == recs[i].nsids);
        FUZZ_ASSERT(again[i].body_len == recs[i].body_len);
        FUZZ_ASSERT(memcmp(again[i].body, recs[i].body, recs[i].body_len)
                    == 0);

        for (k = 0; k < recs[i].nsids; k++) {
            FUZZ_ASSERT(memcmp(again[i].sids[k], recs[i].sids[k],
                               NGX_CHAT_WIRE_SID_LEN) == 0);
        }
    }

    free(out);

    return 0;
}
