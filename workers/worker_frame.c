/*
 * worker_frame.c: the protocol frames chat_worker answers with (ack,
 * message, error, receipt, typing, group; the read answers are assembled
 * from these objects in worker_reads.c), exactly as ../shared/PROTOCOL.md
 * spells them.
 *
 * Frames are built as jansson objects, which keep insertion order, and
 * serialized compactly once; the bytes then go to every session unchanged.
 * message_id is a string because ids above 2^53 do not survive JavaScript.
 * Pure code: the unit tests include this file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"


static json_t *
chat_frame_body(const chat_message_t *m)
{
    json_t  *body;

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
    json_object_set_new(o, "body", chat_frame_body(m));
    json_object_set_new(o, "server_ts", json_integer(m->server_ts));

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
