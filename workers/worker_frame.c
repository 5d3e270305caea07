/*
 * worker_frame.c: the protocol frames chat_worker answers with (ack,
 * message, error, receipt, typing, group, history, conversations,
 * sync_done, receipts), exactly as ../shared/PROTOCOL.md spells them.
 *
 * Frames are built as jansson objects, which keep insertion order, and
 * serialized compactly once; the bytes then go to every session unchanged.
 * message_id is a string because ids above 2^53 do not survive JavaScript.
 * The ack and the text message, two frames per message sent, are written
 * straight to bytes instead: building and dumping objects was a third of
 * the worker's CPU. They come out byte for byte as jansson would write
 * them (the unit tests compare the two).
 * Pure code: the unit tests include this file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_frame.h"


static json_t *
chat_frame_body(const chat_message_t *m)
{
    json_t  *body;

    /* a reaction's body is {"emoji": ...}, null when taken back */
    if (strcmp(m->kind, "reaction") == 0) {
        return json_pack("{s:o}", "emoji",
                         m->body ? json_string(m->body) : json_null());
    }

    /* erased by a deletion (or a deletion itself) */
    if (m->body == NULL) {
        return json_null();
    }

    /* a system message's body is a JSON object on the wire; the store
     * keeps its text */
    if (strcmp(m->kind, "system") == 0) {
        body = json_loads(m->body, 0, NULL);
        if (body) {
            return body;
        }

        log_warn("conversation %s seq %lld: system body is not JSON",
                 m->conv, (long long) m->seq);
    }

    return json_string(m->body);
}


/* a text message's current state, each part only when there is one (a
 * fresh message has none): what it answers, its last edit, its deletion,
 * its reactions (an object from the first reaction on, empty when all
 * were taken back) */
static void
chat_frame_message_state(json_t *o, const chat_message_t *m)
{
    json_t  *reactions;
    char     id[24];

    if (m->reply_to != 0) {
        snprintf(id, sizeof(id), "%lld", (long long) m->reply_to);
        json_object_set_new(o, "reply_to", json_string(id));
    }

    if (m->edited_at != 0) {
        json_object_set_new(o, "edited_at", json_integer(m->edited_at));
    }

    if (m->deleted) {
        json_object_set_new(o, "deleted", json_true());
    }

    if (m->reactions) {
        reactions = json_loads(m->reactions, 0, NULL);

        if (json_is_object(reactions)) {
            json_object_set_new(o, "reactions", reactions);

        } else {
            log_warn("conversation %s seq %lld: reactions are not an object",
                     m->conv, (long long) m->seq);
            json_decref(reactions);
        }
    }
}


json_t *
chat_frame_message_object(const chat_message_t *m, bool with_type)
{
    json_t  *o = json_object();
    char     id[24];

    snprintf(id, sizeof(id), "%lld", (long long) m->message_id);

    if (with_type) {
        json_object_set_new(o, "type", json_string("message"));
    }

    json_object_set_new(o, "message_id", json_string(id));
    json_object_set_new(o, "conversation_id", json_string(m->conv));
    json_object_set_new(o, "seq", json_integer(m->seq));
    json_object_set_new(o, "sender_id", json_string(m->sender));
    json_object_set_new(o, "client_msg_id",
                        m->cmid ? json_string(m->cmid) : json_null());
    json_object_set_new(o, "kind", json_string(m->kind));

    if (m->target_id != 0) {
        snprintf(id, sizeof(id), "%lld", (long long) m->target_id);
        json_object_set_new(o, "target_id", json_string(id));
    }

    json_object_set_new(o, "body", chat_frame_body(m));
    json_object_set_new(o, "server_ts", json_integer(m->server_ts));

    if (strcmp(m->kind, "text") == 0) {
        chat_frame_message_state(o, m);
    }

    if (m->attachments) {
        json_object_set_new(o, "attachments",
                            json_loads(m->attachments, 0, NULL));
    }

    return o;
}


json_t *
chat_frame_ack(const chat_message_t *m)
{
    json_t  *o = json_object();
    char     id[24];

    snprintf(id, sizeof(id), "%lld", (long long) m->message_id);

    json_object_set_new(o, "type", json_string("ack"));
    json_object_set_new(o, "client_msg_id",
                        m->cmid ? json_string(m->cmid) : json_null());
    json_object_set_new(o, "message_id", json_string(id));
    json_object_set_new(o, "conversation_id", json_string(m->conv));
    json_object_set_new(o, "seq", json_integer(m->seq));
    json_object_set_new(o, "server_ts", json_integer(m->server_ts));

    return o;
}


json_t *
chat_frame_error(const char *code, const char *message, const char *tag_name,
    json_t *tag)
{
    json_t  *o = json_object();

    json_object_set_new(o, "type", json_string("error"));
    json_object_set_new(o, "code", json_string(code));
    json_object_set_new(o, "message", json_string(message));

    if (tag_name && tag) {
        json_object_set(o, tag_name, tag);
    }

    return o;
}


/* an error tagged with what the request carried: its client_msg_id for a
 * send, else its req_id */
json_t *
chat_frame_error_for(const chat_request_t *req, const char *code,
    const char *message)
{
    json_t  *frame, *cmid;

    if (req->cmid) {
        cmid = json_string(req->cmid);
        frame = chat_frame_error(code, message, "client_msg_id", cmid);
        json_decref(cmid);
        return frame;
    }

    return chat_frame_error(code, message, "req_id", req->req_id);
}


json_t *
chat_frame_receipt(const char *conv, const char *user, const char *state,
    int64_t seq, int64_t server_ts)
{
    json_t  *o = json_object();

    json_object_set_new(o, "type", json_string("receipt"));
    json_object_set_new(o, "conversation_id", json_string(conv));
    json_object_set_new(o, "user_id", json_string(user));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "server_ts", json_integer(server_ts));

    return o;
}


json_t *
chat_frame_typing(const char *conv, const char *user, const char *state)
{
    json_t  *o = json_object();

    json_object_set_new(o, "type", json_string("typing"));
    json_object_set_new(o, "conversation_id", json_string(conv));
    json_object_set_new(o, "user_id", json_string(user));
    json_object_set_new(o, "state", json_string(state));

    return o;
}


/* the current members (past ones are not listed), admins first */
json_t *
chat_frame_group(json_t *req_id, const char *conv, const char *name,
    const chat_member_t *members, size_t n)
{
    json_t  *o = json_object(), *list = json_array();
    size_t   i;
    int      pass;

    for (pass = 1; pass >= 0; pass--) {
        for (i = 0; i < n; i++) {
            if (members[i].removed_seq >= 0 || members[i].admin != pass) {
                continue;
            }

            json_array_append_new(list,
                json_pack("{s:s,s:s}", "user_id", members[i].user, "role",
                          members[i].admin ? "admin" : "member"));
        }
    }

    json_object_set_new(o, "type", json_string("group"));
    if (req_id) {
        json_object_set(o, "req_id", req_id);
    }
    json_object_set_new(o, "conversation_id", json_string(conv));
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "members", list);

    return o;
}


/* a history answer; its messages without "type" */
json_t *
chat_frame_history(json_t *req_id, const char *conv,
    const chat_history_rows_t *h)
{
    json_t  *o = json_object(), *messages = json_array();
    size_t   i;

    for (i = 0; i < h->n; i++) {
        json_array_append_new(messages,
                              chat_frame_message_object(&h->messages[i],
                                                        false));
    }

    json_object_set_new(o, "type", json_string("history"));
    if (req_id) {
        json_object_set(o, "req_id", req_id);
    }
    json_object_set_new(o, "conversation_id", json_string(conv));
    json_object_set_new(o, "messages", messages);
    json_object_set_new(o, "has_more", json_boolean(h->has_more));

    return o;
}


/* everyone the user blocks */
json_t *
chat_frame_blocked(json_t *req_id, const char *const *users, size_t n)
{
    json_t  *o = json_object(), *ids = json_array();
    size_t   i;

    for (i = 0; i < n; i++) {
        json_array_append_new(ids, json_string(users[i]));
    }

    json_object_set_new(o, "type", json_string("blocked"));
    if (req_id) {
        json_object_set(o, "req_id", req_id);
    }
    json_object_set_new(o, "user_ids", ids);

    return o;
}


/* a page of search results, newest first: each a message as history has
 * it, with its highlight */
json_t *
chat_frame_search(json_t *req_id, const chat_search_rows_t *s)
{
    json_t  *o = json_object(), *results = json_array(), *m;
    size_t   i;

    for (i = 0; i < s->n; i++) {
        m = chat_frame_message_object(&s->rows[i].msg, false);
        json_object_set_new(m, "highlight",
                            json_string(s->rows[i].highlight));
        json_array_append_new(results, m);
    }

    json_object_set_new(o, "type", json_string("search"));
    if (req_id) {
        json_object_set(o, "req_id", req_id);
    }
    json_object_set_new(o, "results", results);
    json_object_set_new(o, "has_more", json_boolean(s->has_more));

    return o;
}


/* one item of a conversations frame; truncated is the sync's */
json_t *
chat_frame_conversation_item(const chat_sync_conv_t *c, bool sync)
{
    json_t  *item = json_object();

    json_object_set_new(item, "conversation_id", json_string(c->conv));
    json_object_set_new(item, "kind", json_string(c->kind));
    json_object_set_new(item, "name",
                        c->name ? json_string(c->name) : json_null());
    json_object_set_new(item, "member_count", json_integer(c->member_count));
    json_object_set_new(item, "last_seq", json_integer(c->last_seq));
    json_object_set_new(item, "delivered_seq",
                        json_integer(c->delivered_seq));
    json_object_set_new(item, "read_seq", json_integer(c->read_seq));
    json_object_set_new(item, "others_delivered_seq",
                        json_integer(c->others_delivered_seq));
    json_object_set_new(item, "others_read_seq",
                        json_integer(c->others_read_seq));
    json_object_set_new(item, "unread", json_integer(c->unread));
    json_object_set_new(item, "last_message",
                        c->has_last
                        ? chat_frame_message_object(&c->last, false)
                        : json_null());

    if (sync && c->truncated) {
        json_object_set_new(item, "truncated", json_true());
    }

    return item;
}


/*
 * How many of the rows a page lists. A page ends inside a run of items of
 * the same activity only when the run is the whole page: a client that
 * asks for the next one with before_ts alone (the last item's activity)
 * misses none of them.
 */
static size_t
chat_frame_page_end(const chat_sync_rows_t *s, size_t n)
{
    size_t  k;

    if (n == 0 || n >= s->nconvs
        || s->convs[n].activity != s->convs[n - 1].activity)
    {
        return n;
    }

    for (k = n - 1; k > 0 && s->convs[k - 1].activity == s->convs[n].activity;
         k--)
    {
        /* void */
    }

    return k > 0 ? k : n;
}


/*
 * A conversations frame (the first of a sync answer, or the answer to a
 * conversations request) of at most the rows' limit and at most max
 * bytes, however many rows there are: items that do not fit wait for the
 * next page ("has_more"), which a client asks for with the last item's
 * activity. One item always goes, so that paging never stops at an item
 * larger than max. The items are serialized one by one, exactly as the
 * whole frame would be.
 */
char *
chat_frame_conversations_text(json_t *req_id, const chat_sync_rows_t *s,
    bool sync, size_t max, size_t *listed, size_t *len)
{
    chat_buf_t   b = { 0 }, items = { 0 };
    size_t      *ends, limit, n, i, head;
    char        *text, *out;

    limit = s->nconvs < s->limit || s->limit == 0 ? s->nconvs : s->limit;
    ends = chat_alloc((limit + 1) * sizeof(size_t));

    chat_buf_adds(&b, "{\"type\":\"conversations\"");

    if (req_id) {
        chat_buf_adds(&b, ",\"req_id\":");
        text = json_dumps(req_id, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL) {
            log_error("cannot serialize a frame");
            abort();
        }
        chat_buf_adds(&b, text);
        free(text);
    }

    chat_buf_adds(&b, ",\"items\":[");

    /* the frame's head and tail, and the items that fit between them */
    head = b.len + sizeof("],\"has_more\":false}") - 1;

    for (n = 0; n < limit; n++) {
        text = chat_frame_dump(chat_frame_conversation_item(&s->convs[n],
                                                            sync), &i);

        if (n > 0 && head + items.len + 1 + i > max) {
            free(text);
            break;
        }

        if (n > 0) {
            chat_buf_addc(&items, ',');
        }

        chat_buf_add(&items, text, i);
        ends[n] = items.len;
        free(text);
    }

    n = chat_frame_page_end(s, n);
    chat_buf_add(&b, items.data, n ? ends[n - 1] : 0);
    chat_buf_adds(&b, n < s->nconvs ? "],\"has_more\":true}"
                                    : "],\"has_more\":false}");

    chat_buf_free(&items);
    free(ends);

    *listed = n;
    *len = b.len;

    out = chat_alloc(b.len + 1);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    chat_buf_free(&b);

    return out;
}


/* every current member's pointers of a conversation */
json_t *
chat_frame_receipts(json_t *req_id, const char *conv,
    const chat_receipts_rows_t *r)
{
    json_t  *o = json_object(), *members = json_array();
    size_t   i;

    for (i = 0; i < r->n; i++) {
        json_array_append_new(members,
            json_pack("{s:s,s:I,s:I}", "user_id", r->members[i].user,
                      "delivered_seq",
                      (json_int_t) r->members[i].delivered_seq,
                      "read_seq", (json_int_t) r->members[i].read_seq));
    }

    json_object_set_new(o, "type", json_string("receipts"));
    if (req_id) {
        json_object_set(o, "req_id", req_id);
    }
    json_object_set_new(o, "conversation_id", json_string(conv));
    json_object_set_new(o, "members", members);

    return o;
}


/* the last frame of a sync answer */
json_t *
chat_frame_sync_done(json_t *req_id)
{
    json_t  *o = json_object();

    json_object_set_new(o, "type", json_string("sync_done"));
    if (req_id) {
        json_object_set(o, "req_id", req_id);
    }

    return o;
}


/* the answer to push_register and push_unregister */
json_t *
chat_frame_push_registered(json_t *req_id)
{
    json_t  *o = json_object();

    json_object_set_new(o, "type", json_string("push_registered"));
    if (req_id) {
        json_object_set(o, "req_id", req_id);
    }

    return o;
}


/* the answer to an upload: where to PUT the file, until when */
json_t *
chat_frame_upload(const chat_request_t *req)
{
    json_t  *o = json_object();

    json_object_set_new(o, "type", json_string("upload"));
    if (req->req_id) {
        json_object_set(o, "req_id", req->req_id);
    }
    json_object_set_new(o, "attachment_id", json_string(req->upload.id));
    json_object_set_new(o, "url", json_string(req->upload.url));
    json_object_set_new(o, "expires_at",
                        json_integer((json_int_t) req->upload.expires_at));
    json_object_set_new(o, "max_bytes",
                        json_integer((json_int_t) req->upload.max_bytes));

    return o;
}


/* a frame being written; sized for the worst case before the first byte */
typedef struct {
    char    *start;
    char    *p;
} chat_text_t;


static size_t
chat_text_room(const char *s)
{
    /* a control character takes 6 bytes as \u00XX, quotes come around */
    return s ? strlen(s) * 6 + 2 : 4;
}


static void
chat_text_raw(chat_text_t *t, const char *s)
{
    size_t  n = strlen(s);

    memcpy(t->p, s, n);
    t->p += n;
}


static void
chat_text_int(chat_text_t *t, int64_t v)
{
    t->p += sprintf(t->p, "%lld", (long long) v);
}


/* a JSON string escaped as jansson escapes it: quote, backslash and
 * control characters only, the rest as it is (valid UTF-8 already) */
static void
chat_text_string(chat_text_t *t, const char *s)
{
    static const char     hex[] = "0123456789ABCDEF";
    const unsigned char  *c;
    char                 *p = t->p;

    if (s == NULL) {
        memcpy(p, "null", 4);
        t->p = p + 4;
        return;
    }

    *p++ = '"';

    for (c = (const unsigned char *) s; *c; c++) {
        if (*c >= 0x20 && *c != '"' && *c != '\\') {
            *p++ = (char) *c;
            continue;
        }

        *p++ = '\\';

        switch (*c) {
        case '"':  *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\b': *p++ = 'b'; break;
        case '\f': *p++ = 'f'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        default:
            memcpy(p, "u00", 3);
            p[3] = hex[*c >> 4];
            p[4] = hex[*c & 0xf];
            p += 5;
        }
    }

    *p++ = '"';
    t->p = p;
}


static char *
chat_text_done(chat_text_t *t, size_t *len)
{
    *t->p = '\0';
    *len = (size_t) (t->p - t->start);

    return t->start;
}


char *
chat_frame_ack_text(const chat_message_t *m, size_t *len)
{
    chat_text_t  t;

    t.start = chat_alloc(160 + chat_text_room(m->cmid)
                         + chat_text_room(m->conv));
    t.p = t.start;

    chat_text_raw(&t, "{\"type\":\"ack\",\"client_msg_id\":");
    chat_text_string(&t, m->cmid);
    chat_text_raw(&t, ",\"message_id\":\"");
    chat_text_int(&t, m->message_id);
    chat_text_raw(&t, "\",\"conversation_id\":");
    chat_text_string(&t, m->conv);
    chat_text_raw(&t, ",\"seq\":");
    chat_text_int(&t, m->seq);
    chat_text_raw(&t, ",\"server_ts\":");
    chat_text_int(&t, m->server_ts);
    chat_text_raw(&t, "}");

    return chat_text_done(&t, len);
}


char *
chat_frame_message_text(const chat_message_t *m, size_t *len)
{
    chat_text_t  t;

    if (strcmp(m->kind, "text") != 0 || m->body == NULL || m->deleted
        || m->edited_at != 0 || m->reactions != NULL || m->reply_to != 0
        || m->attachments)
    {
        /* a system body is an object on the wire, and so are the
         * attachments; a reply or a changed message has its state: the
         * general path */
        return chat_frame_dump(chat_frame_message_object(m, true), len);
    }

    t.start = chat_alloc(240 + chat_text_room(m->conv)
                         + chat_text_room(m->sender)
                         + chat_text_room(m->cmid)
                         + chat_text_room(m->body));
    t.p = t.start;

    chat_text_raw(&t, "{\"type\":\"message\",\"message_id\":\"");
    chat_text_int(&t, m->message_id);
    chat_text_raw(&t, "\",\"conversation_id\":");
    chat_text_string(&t, m->conv);
    chat_text_raw(&t, ",\"seq\":");
    chat_text_int(&t, m->seq);
    chat_text_raw(&t, ",\"sender_id\":");
    chat_text_string(&t, m->sender);
    chat_text_raw(&t, ",\"client_msg_id\":");
    chat_text_string(&t, m->cmid);
    chat_text_raw(&t, ",\"kind\":\"text\",\"body\":");
    chat_text_string(&t, m->body);
    chat_text_raw(&t, ",\"server_ts\":");
    chat_text_int(&t, m->server_ts);
    chat_text_raw(&t, "}");

    return chat_text_done(&t, len);
}


char *
chat_frame_dump(json_t *frame, size_t *len)
{
    char  *bytes;

    bytes = json_dumps(frame, JSON_COMPACT);
    json_decref(frame);

    if (bytes == NULL) {
        /* only allocation fails here: strings are valid UTF-8 already */
        chat_log("error", "cannot serialize a frame");
        abort();
    }

    *len = strlen(bytes);

    return bytes;
}
