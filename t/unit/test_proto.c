
/*
 * Unit tests of the client protocol checks (ngx_chat_module/ngx_chat_proto.c):
 * every request either answers the client or becomes one Kafka record.
 * Standalone: no framework, no servers.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_chat_proto.h"
#include "ngx_chat_media_sign.h"


#include "unit.h"


static const ngx_chat_proto_peer_t  alice = {
    "alice", 5, "phone", 5, "s1:0", 4, "00000000000000ab", 1714128000123LL,
    NULL, 900000
};

static const ngx_chat_media_conf_t  media = {
    "0123456789abcdef-media", 22, "https://h.example/media/", 24, 1000,
    "image/png text/plain", 20, 60000
};

static const ngx_chat_proto_peer_t  alice_media = {
    "alice", 5, "phone", 5, "s1:0", 4, "00000000000000ab", 1714128000123LL,
    &media, 900000
};


static json_t *
run(const char *text, ngx_chat_proto_result_t *res)
{
    ngx_chat_proto_handle(&alice, text, strlen(text), res);

    if (res->reply) {
        return json_loadb(res->reply, res->reply_len, 0, NULL);
    }

    return json_loadb(res->record, res->record_len, 0, NULL);
}


/* the frame answers with an error of this code, tagged as given */

static void
expect_error(const char *text, const char *code, const char *tag,
    const char *tag_json)
{
    json_t                   *j, *t;
    char                     *dumped;
    ngx_chat_proto_result_t   res;

    j = run(text, &res);

    CHECK(res.record == NULL, "%s: no record expected", text);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "type")),
                      "error") == 0, "%s: error expected", text);

    if (j == NULL) {
        ngx_chat_proto_result_free(&res);
        return;
    }

    CHECK(strcmp(json_string_value(json_object_get(j, "code")), code) == 0,
          "%s: code %s expected, got %s", text, code, res.reply);
    CHECK(json_is_string(json_object_get(j, "message")),
          "%s: message expected", text);

    if (tag) {
        t = json_object_get(j, tag);
        dumped = t ? json_dumps(t, JSON_ENCODE_ANY) : NULL;
        CHECK(dumped && strcmp(dumped, tag_json) == 0,
              "%s: tag %s=%s expected, got %s", text, tag, tag_json,
              res.reply);
        free(dumped);

    } else {
        CHECK(json_object_get(j, "req_id") == NULL
              && json_object_get(j, "client_msg_id") == NULL,
              "%s: untagged error expected", text);
    }

    json_decref(j);
    ngx_chat_proto_result_free(&res);
}


static void
test_ping(void)
{
    json_t                   *j;
    ngx_chat_proto_result_t   res;

    j = run("{\"type\":\"ping\",\"req_id\":\"r1\"}", &res);
    CHECK(res.reply && strcmp(res.reply,
                              "{\"type\":\"pong\",\"req_id\":\"r1\"}") == 0,
          "pong: %s", res.reply);
    CHECK(res.record == NULL, "ping makes no record");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"ping\",\"req_id\":12345678901}", &res);
    CHECK(res.reply && strstr(res.reply, "\"req_id\":12345678901"),
          "numeric req_id echoed: %s", res.reply);
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"ping\",\"req_id\":\"[[[[[[[[[[[[[[[[[[[[\\\"\"}", &res);
    CHECK(res.reply && strstr(res.reply, "pong"),
          "brackets inside strings do not count as nesting: %s", res.reply);
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"ping\"}", &res);
    CHECK(res.reply && strcmp(res.reply, "{\"type\":\"pong\"}") == 0,
          "bare pong: %s", res.reply);
    json_decref(j);
    ngx_chat_proto_result_free(&res);
}


static void
test_send(void)
{
    json_t                   *j;
    ngx_chat_proto_result_t   res;

    /* "to" builds dm:<a>:<b> with a < b, either way round */

    j = run("{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\","
            "\"body\":\"hi\"}", &res);
    CHECK(res.reply == NULL, "send has no reply: %s", res.reply);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "conv")),
                      "dm:alice:bob") == 0, "alice < bob byte order");
    CHECK(strcmp(res.key, json_string_value(json_object_get(j, "conv")))
          == 0, "keyed by the conversation");
    CHECK(strcmp(json_string_value(json_object_get(j, "op")), "send") == 0,
          "op send");
    CHECK(strcmp(json_string_value(json_object_get(j, "cmid")), "c1") == 0,
          "cmid");
    CHECK(strcmp(json_string_value(json_object_get(j, "body")), "hi") == 0,
          "body");
    CHECK(strcmp(json_string_value(json_object_get(j, "sid")),
                 "00000000000000ab") == 0, "sid");
    CHECK(strcmp(json_string_value(json_object_get(j, "node")), "s1:0")
          == 0, "node");
    CHECK(strcmp(json_string_value(json_object_get(j, "user")), "alice")
          == 0, "user");
    CHECK(strcmp(json_string_value(json_object_get(j, "dev")), "phone")
          == 0, "dev");
    CHECK(json_integer_value(json_object_get(j, "ts")) == 1714128000123LL,
          "ts");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"aaron\","
            "\"body\":\"hi\"}", &res);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "conv")),
                      "dm:aaron:alice") == 0, "aaron < alice");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"ali\","
            "\"body\":\"hi\"}", &res);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "conv")),
                      "dm:ali:alice") == 0, "a prefix sorts first");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"send\",\"client_msg_id\":\"c2\","
            "\"conversation_id\":\"dm:alice:bob\",\"body\":\"x\"}", &res);
    CHECK(res.record && strcmp(res.key, "dm:alice:bob") == 0,
          "conversation_id accepted");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"send\",\"client_msg_id\":\"c3\","
            "\"conversation_id\":\"g:team\",\"body\":\"x\"}", &res);
    CHECK(res.record != NULL, "other ids go to the workers to check");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"conversation_id\":\"dm:bob:carol\",\"body\":\"x\"}",
                 "forbidden", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"conversation_id\":\"dm:bob:alice\",\"body\":\"x\"}",
                 "forbidden", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"conversation_id\":\"dm:alice\",\"body\":\"x\"}",
                 "forbidden", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"to\":\"bob\"}",
                 "bad_request", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"to\":\"bob\",\"body\":\"\"}",
                 "bad_request", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"to\":\"bob\",\"body\":7}",
                 "bad_request", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"body\":\"x\"}",
                 "bad_request", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"b\","
                 "\"conversation_id\":\"dm:alice:b\",\"body\":\"x\"}",
                 "bad_request", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"c1\","
                 "\"to\":\"bad id\",\"body\":\"x\"}",
                 "bad_request", "client_msg_id", "\"c1\"");
    expect_error("{\"type\":\"send\",\"to\":\"bob\",\"body\":\"x\"}",
                 "bad_request", NULL, NULL);
    expect_error("{\"type\":\"send\",\"client_msg_id\":\"\","
                 "\"to\":\"bob\",\"body\":\"x\"}",
                 "bad_request", "client_msg_id", "\"\"");
    expect_error("{\"type\":\"send\",\"client_msg_id\":"
                 "\"0123456789012345678901234567890123456789"
                 "01234567890123456789012345\",\"to\":\"bob\","
                 "\"body\":\"x\"}",
                 "too_large", "client_msg_id",
                 "\"0123456789012345678901234567890123456789"
                 "01234567890123456789012345\"");
}


static void
test_sync_history(void)
{
    json_t                   *j;
    ngx_chat_proto_result_t   res;

    j = run("{\"type\":\"sync\",\"req_id\":\"s\","
            "\"cursors\":{\"dm:alice:bob\":3}}", &res);
    CHECK(res.record && strcmp(res.key, "alice") == 0, "sync keyed by user");
    CHECK(j && json_integer_value(json_object_get(
                  json_object_get(j, "cursors"), "dm:alice:bob")) == 3,
          "cursors passed on");
    CHECK(j && strcmp(json_string_value(json_object_get(j, "req_id")), "s")
          == 0, "req_id in the record");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"sync\",\"req_id\":1}", &res);
    CHECK(res.record != NULL, "sync without cursors");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"sync\",\"req_id\":1,\"cursors\":[1]}",
                 "bad_request", "req_id", "1");
    expect_error("{\"type\":\"sync\",\"req_id\":1,"
                 "\"cursors\":{\"dm:alice:bob\":\"3\"}}",
                 "bad_request", "req_id", "1");

    j = run("{\"type\":\"history\",\"req_id\":\"h\","
            "\"conversation_id\":\"dm:alice:bob\",\"before_seq\":10,"
            "\"limit\":20}", &res);
    CHECK(res.record && strcmp(res.key, "alice") == 0,
          "history keyed by user");
    CHECK(j && json_integer_value(json_object_get(j, "before_seq")) == 10
          && json_integer_value(json_object_get(j, "limit")) == 20
          && json_object_get(j, "after_seq") == NULL, "history fields");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"history\",\"req_id\":\"h\","
            "\"conversation_id\":\"dm:alice:bob\"}", &res);
    CHECK(j && json_integer_value(json_object_get(j, "limit")) == 50,
          "default limit 50");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"history\",\"req_id\":\"h\","
                 "\"conversation_id\":\"dm:alice:bob\",\"limit\":0}",
                 "bad_request", "req_id", "\"h\"");
    expect_error("{\"type\":\"history\",\"req_id\":\"h\","
                 "\"conversation_id\":\"dm:alice:bob\",\"limit\":101}",
                 "bad_request", "req_id", "\"h\"");
    expect_error("{\"type\":\"history\",\"req_id\":\"h\","
                 "\"conversation_id\":\"dm:alice:bob\",\"before_seq\":2,"
                 "\"after_seq\":1}",
                 "bad_request", "req_id", "\"h\"");
    expect_error("{\"type\":\"history\",\"req_id\":\"h\","
                 "\"conversation_id\":\"dm:bob:carol\"}",
                 "forbidden", "req_id", "\"h\"");
    expect_error("{\"type\":\"history\",\"req_id\":\"h\"}",
                 "bad_request", "req_id", "\"h\"");
}


/* the conversations and receipts requests of the contract's second part */
static void
test_lists(void)
{
    json_t                   *j;
    ngx_chat_proto_result_t   res;

    j = run("{\"type\":\"conversations\",\"req_id\":\"c\"}", &res);
    CHECK(res.record && strcmp(res.key, "alice") == 0,
          "conversations keyed by user");
    CHECK(j && strcmp(json_string_value(json_object_get(j, "op")),
                      "conversations") == 0, "conversations op");
    CHECK(j && json_integer_value(json_object_get(j, "limit")) == 50
          && json_object_get(j, "before_ts") == NULL
          && json_object_get(j, "before_message_id") == NULL,
          "default limit 50, no start");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"conversations\",\"req_id\":2,\"limit\":200,"
            "\"before_ts\":1714128000123,\"before_message_id\":\"77\"}",
            &res);
    CHECK(j && json_integer_value(json_object_get(j, "limit")) == 200
          && json_integer_value(json_object_get(j, "before_ts"))
             == 1714128000123LL
          && strcmp(json_string_value(json_object_get(j,
                                          "before_message_id")), "77") == 0
          && json_integer_value(json_object_get(j, "req_id")) == 2,
          "conversations fields");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"conversations\",\"req_id\":2,\"limit\":1,"
            "\"before_ts\":0}", &res);
    CHECK(res.record != NULL, "before_ts 0 and limit 1 are fine");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"limit\":0}", "bad_request", "req_id", "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"limit\":201}", "bad_request", "req_id", "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"limit\":\"5\"}", "bad_request", "req_id", "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"before_ts\":-1}", "bad_request", "req_id", "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"before_ts\":1.5}", "bad_request", "req_id", "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"before_message_id\":\"5\"}", "bad_request", "req_id",
                 "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"before_ts\":1,\"before_message_id\":5}", "bad_request",
                 "req_id", "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"before_ts\":1,\"before_message_id\":\"-5\"}",
                 "bad_request", "req_id", "\"c\"");
    expect_error("{\"type\":\"conversations\",\"req_id\":\"c\","
                 "\"before_ts\":1,\"before_message_id\":"
                 "\"12345678901234567890\"}", "bad_request", "req_id",
                 "\"c\"");
    expect_error("{\"type\":\"conversations\"}", "bad_request", NULL, NULL);

    j = run("{\"type\":\"receipts\",\"req_id\":\"r\","
            "\"conversation_id\":\"g:00000000000000ab1\"}", &res);
    CHECK(res.record && strcmp(res.key, "g:00000000000000ab1") == 0,
          "receipts keyed by the conversation");
    CHECK(j && strcmp(json_string_value(json_object_get(j, "conv")),
                      "g:00000000000000ab1") == 0
          && strcmp(json_string_value(json_object_get(j, "op")),
                    "receipts") == 0, "receipts fields");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"receipts\",\"req_id\":\"r\","
                 "\"conversation_id\":\"dm:bob:carol\"}", "forbidden",
                 "req_id", "\"r\"");
    expect_error("{\"type\":\"receipts\",\"req_id\":\"r\"}", "bad_request",
                 "req_id", "\"r\"");
    expect_error("{\"type\":\"receipts\",\"req_id\":\"r\","
                 "\"conversation_id\":7}", "bad_request", "req_id",
                 "\"r\"");
    expect_error("{\"type\":\"receipts\",\"conversation_id\":\"g:1\"}",
                 "bad_request", NULL, NULL);
}


static void
test_groups(void)
{
    json_t                   *j, *m;
    ngx_chat_proto_result_t   res;

    j = run("{\"type\":\"create_group\",\"req_id\":1,\"name\":\"g\","
            "\"members\":[\"bob\",\"alice\",\"carol\",\"bob\"]}", &res);
    m = j ? json_object_get(j, "members") : NULL;
    CHECK(m && json_array_size(m) == 2
          && strcmp(json_string_value(json_array_get(m, 0)), "bob") == 0
          && strcmp(json_string_value(json_array_get(m, 1)), "carol") == 0,
          "duplicates and the creator folded, order kept: %s", res.record);
    CHECK(strncmp(res.key, "g:", 2) == 0, "a fresh group id: %s", res.key);
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"add_members\",\"req_id\":2,"
                 "\"conversation_id\":\"g:x\",\"user_ids\":[]}",
                 "bad_request", "req_id", "2");
    expect_error("{\"type\":\"add_members\",\"req_id\":2,"
                 "\"conversation_id\":\"g:x\",\"user_ids\":[\"a b\"]}",
                 "bad_request", "req_id", "2");
}


/* set_role: a group, a member, a role; the worker decides who may */
static void
test_set_role(void)
{
    json_t                   *j;
    ngx_chat_proto_result_t   res;

    j = run("{\"type\":\"set_role\",\"req_id\":3,"
            "\"conversation_id\":\"g:x\",\"user_id\":\"bob\","
            "\"role\":\"admin\"}", &res);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "op")),
                      "set_role") == 0
          && strcmp(json_string_value(json_object_get(j, "conv")), "g:x") == 0
          && strcmp(json_string_value(json_object_get(j, "user_id")),
                    "bob") == 0
          && strcmp(json_string_value(json_object_get(j, "role")),
                    "admin") == 0
          && json_integer_value(json_object_get(j, "req_id")) == 3
          && strcmp(json_string_value(json_object_get(j, "user")),
                    "alice") == 0,
          "record: %s", res.record);
    CHECK(strcmp(res.key, "g:x") == 0, "keyed by the group: %s", res.key);
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"set_role\",\"req_id\":3,"
                 "\"conversation_id\":\"g:x\",\"user_id\":\"bob\","
                 "\"role\":\"owner\"}", "bad_request", "req_id", "3");
    expect_error("{\"type\":\"set_role\",\"req_id\":3,"
                 "\"conversation_id\":\"g:x\",\"role\":\"admin\"}",
                 "bad_request", "req_id", "3");
    expect_error("{\"type\":\"set_role\",\"req_id\":3,"
                 "\"conversation_id\":\"g:x\",\"user_id\":\"b b\","
                 "\"role\":\"admin\"}", "bad_request", "req_id", "3");
    expect_error("{\"type\":\"set_role\",\"req_id\":3,"
                 "\"user_id\":\"bob\",\"role\":\"admin\"}",
                 "bad_request", "req_id", "3");
    expect_error("{\"type\":\"set_role\","
                 "\"conversation_id\":\"g:x\",\"user_id\":\"bob\","
                 "\"role\":\"admin\"}", "bad_request", NULL, NULL);
}


/* a record's field as a string (dumped), for the checks below */
static int
field_is(json_t *j, const char *field, const char *want)
{
    char  *s;
    int    ok;

    s = j ? json_dumps(json_object_get(j, field), JSON_ENCODE_ANY) : NULL;
    ok = s && strcmp(s, want) == 0;
    free(s);

    return ok;
}


static void
test_changes(void)
{
    json_t                   *j;
    ngx_chat_proto_result_t   res;

    j = run("{\"type\":\"edit\",\"client_msg_id\":\"e1\","
            "\"conversation_id\":\"g:1\",\"message_id\":\"42\","
            "\"body\":\"new\"}", &res);
    CHECK(field_is(j, "op", "\"edit\"") && field_is(j, "cmid", "\"e1\"")
          && field_is(j, "target", "\"42\"")
          && field_is(j, "body", "\"new\"")
          && field_is(j, "window_ms", "900000"), "edit record: %s",
          res.record);
    CHECK(strcmp(res.key, "g:1") == 0, "keyed by the conversation: %s",
          res.key);
    CHECK(!res.is_send, "an edit is no send");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"react\",\"client_msg_id\":\"r1\","
            "\"conversation_id\":\"dm:alice:bob\",\"message_id\":\"42\","
            "\"emoji\":null}", &res);
    CHECK(field_is(j, "op", "\"react\"") && field_is(j, "emoji", "null"),
          "reaction taken back: %s", res.record);
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"send\",\"client_msg_id\":\"s1\",\"to\":\"bob\","
            "\"body\":\"b\",\"reply_to\":\"7\"}", &res);
    CHECK(field_is(j, "reply_to", "\"7\"") && res.is_send,
          "a reply: %s", res.record);
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"send\",\"client_msg_id\":\"s1\",\"to\":\"bob\","
                 "\"body\":\"b\",\"reply_to\":7}", "bad_request",
                 "client_msg_id", "\"s1\"");
    expect_error("{\"type\":\"edit\",\"client_msg_id\":\"e1\","
                 "\"conversation_id\":\"g:1\",\"message_id\":\"42\"}",
                 "bad_request", "client_msg_id", "\"e1\"");
    expect_error("{\"type\":\"delete\",\"client_msg_id\":\"d1\","
                 "\"conversation_id\":\"g:1\",\"message_id\":\"4x\"}",
                 "bad_request", "client_msg_id", "\"d1\"");
    expect_error("{\"type\":\"delete\",\"client_msg_id\":\"d1\","
                 "\"conversation_id\":\"dm:bob:carol\",\"message_id\":\"4\"}",
                 "forbidden", "client_msg_id", "\"d1\"");
    expect_error("{\"type\":\"react\",\"client_msg_id\":\"r1\","
                 "\"conversation_id\":\"g:1\",\"message_id\":\"4\","
                 "\"emoji\":\"123456789012345678901234567890123\"}",
                 "bad_request", "client_msg_id", "\"r1\"");
    expect_error("{\"type\":\"react\",\"client_msg_id\":\"r1\","
                 "\"conversation_id\":\"g:1\",\"message_id\":\"4\"}",
                 "bad_request", "client_msg_id", "\"r1\"");

    /* block and search */
    j = run("{\"type\":\"block\",\"req_id\":1,\"user_id\":\"bob\"}", &res);
    CHECK(field_is(j, "op", "\"block\"") && field_is(j, "other", "\"bob\"")
          && strcmp(res.key, "alice") == 0, "block: %s", res.record);
    json_decref(j);
    ngx_chat_proto_result_free(&res);
    expect_error("{\"type\":\"block\",\"req_id\":1,\"user_id\":\"alice\"}",
                 "bad_request", "req_id", "1");
    expect_error("{\"type\":\"unblock\",\"user_id\":\"bob\"}",
                 "bad_request", NULL, NULL);

    j = run("{\"type\":\"search\",\"req_id\":2,\"query\":\"a b\","
            "\"conversation_id\":\"g:1\",\"before_id\":\"9\"}", &res);
    CHECK(field_is(j, "query", "\"a b\"") && field_is(j, "limit", "20")
          && field_is(j, "conv", "\"g:1\"")
          && field_is(j, "before_id", "\"9\""), "search: %s", res.record);
    json_decref(j);
    ngx_chat_proto_result_free(&res);
    expect_error("{\"type\":\"search\",\"req_id\":2,\"query\":\"\"}",
                 "bad_request", "req_id", "2");
    expect_error("{\"type\":\"search\",\"req_id\":2,\"query\":\"x\","
                 "\"limit\":51}", "bad_request", "req_id", "2");
    expect_error("{\"type\":\"search\",\"req_id\":2,\"query\":\"x\","
                 "\"conversation_id\":\"dm:bob:carol\"}", "forbidden",
                 "req_id", "2");
}


static void
test_bad_frames(void)
{
    expect_error("{\"type\":\"receipt\",\"req_id\":\"r\",\"seq\":"
                 "9223372036854775808}", "bad_request", "req_id", "\"r\"");
    expect_error("{\"type\":\"history\",\"req_id\":7,\"after_seq\":"
                 "99999999999999999999}", "bad_request", "req_id", "7");
    /* a tag beyond int64 is echoed as read, never cast (fuzz_proto found it) */
    expect_error("{\"type\":\"p-ng\",\"req_id\":19223372036854775807}",
                 "bad_request", "req_id", "1.9223372036854776e19");

    /* answers matched by req_id: without one a request is refused */
    expect_error("{\"type\":\"sync\"}", "bad_request", NULL, NULL);
    expect_error("{\"type\":\"history\",\"conversation_id\":\"dm:a:b\"}",
                 "bad_request", NULL, NULL);
    expect_error("{\"type\":\"create_group\",\"name\":\"g\","
                 "\"members\":[]}", "bad_request", NULL, NULL);
    expect_error("{\"type\":\"add_members\",\"conversation_id\":\"g:x\","
                 "\"user_ids\":[\"b\"]}", "bad_request", NULL, NULL);
    expect_error("{\"type\":\"remove_members\",\"conversation_id\":\"g:x\","
                 "\"user_ids\":[\"b\"]}", "bad_request", NULL, NULL);

    expect_error("not json", "bad_request", NULL, NULL);
    expect_error("[1,2]", "bad_request", NULL, NULL);
    expect_error("{\"req_id\":\"a\"}", "bad_request", "req_id", "\"a\"");
    expect_error("{\"type\":5,\"req_id\":\"a\"}", "bad_request", "req_id",
                 "\"a\"");
    expect_error("{\"type\":\"nope\",\"req_id\":\"a\"}", "bad_request",
                 "req_id", "\"a\"");
    expect_error("{\"type\":\"ping\",\"type\":\"ping\"}", "bad_request",
                 NULL, NULL);
    expect_error("{\"type\":\"ping\",\"req_id\":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}",
                 "too_large", NULL, NULL);
    expect_error("{\"type\":\"ping\",\"req_id\":\"[[[[[[[[[[[[[[[[[[[[\","
                 "\"x\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}",
                 "too_large", NULL, NULL);
}


static void
test_record_failed(void)
{
    char                     sid[17], *frame;
    size_t                   len;
    json_t                  *j;
    ngx_chat_proto_result_t  res;

    ngx_chat_proto_handle(&alice, "{\"type\":\"send\",\"client_msg_id\":"
                          "\"c9\",\"to\":\"bob\",\"body\":\"x\"}",
                          sizeof("{\"type\":\"send\",\"client_msg_id\":"
                                 "\"c9\",\"to\":\"bob\",\"body\":\"x\"}") - 1,
                          &res);

    CHECK(ngx_chat_proto_record_failed(res.record, res.record_len, 0,
                                       sid, sizeof(sid), &frame, &len) == 0,
          "a failed record is understood");
    CHECK(strcmp(sid, "00000000000000ab") == 0, "its session");

    j = json_loadb(frame, len, 0, NULL);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "code")),
                      "unavailable") == 0
          && strcmp(json_string_value(json_object_get(j, "client_msg_id")),
                    "c9") == 0, "unavailable, tagged: %s", frame);
    json_decref(j);
    free(frame);

    /* Kafka may have it: the client is told to retry, not that it is lost */
    CHECK(ngx_chat_proto_record_failed(res.record, res.record_len, 1,
                                       sid, sizeof(sid), &frame, &len) == 0,
          "a record of unknown fate is understood");
    j = json_loadb(frame, len, 0, NULL);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "code")),
                      "timeout") == 0
          && strcmp(json_string_value(json_object_get(j, "client_msg_id")),
                    "c9") == 0, "timeout, tagged: %s", frame);
    json_decref(j);
    free(frame);
    ngx_chat_proto_result_free(&res);

    CHECK(ngx_chat_proto_record_failed("junk", 4, 0, sid, sizeof(sid),
                                       &frame, &len) == -1, "junk refused");
}



/*
 * The send fast path against the general path: whatever the fast path
 * takes must come out as the general path has it (same record once
 * parsed, same key, same tag); what it leaves must still be answered.
 */
static int
same_result(const char *text, int expect_fast)
{
    json_t                   *a, *b;
    int                       fast, same = 1;
    ngx_chat_proto_result_t   rf, rd;

    memset(&rf, 0, sizeof(rf));
    fast = ngx_chat_proto_send_fast(&alice, text, strlen(text), &rf);
    ngx_chat_proto_handle_dom(&alice, text, strlen(text), &rd);

    if (expect_fast >= 0) {
        CHECK(fast == expect_fast, "%s: fast path %s expected", text,
              expect_fast ? "taken" : "declined");
    }

    if (fast) {
        a = json_loadb(rf.record, rf.record_len, 0, NULL);
        b = rd.record ? json_loadb(rd.record, rd.record_len, 0, NULL) : NULL;
        same = a && b && json_equal(a, b) && rd.reply == NULL
               && rf.key_len == rd.key_len
               && memcmp(rf.key, rd.key, rf.key_len) == 0
               && rd.tag_name && strcmp(rf.tag_name, rd.tag_name) == 0
               && json_equal(rf.tag_value, rd.tag_value)
               && strlen(rf.record) == rf.record_len;
        CHECK(same, "%s: fast %s, general %s", text, rf.record,
              rd.record ? rd.record : rd.reply);
        json_decref(a);
        json_decref(b);
        ngx_chat_proto_result_free(&rf);
    }

    ngx_chat_proto_result_free(&rd);

    return fast;
}


static void
test_send_fast(void)
{
    static const char  *taken[] = {
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"hi\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"aaa\",\"body\":\"hi\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"alice\",\"body\":\"me\"}",
        " \t\r\n{ \"body\" : \"x\" , \"to\":\"bob\",\"client_msg_id\":\"c\","
            "\"type\":\"send\" } \n",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"conversation_id\":"
            "\"dm:alice:bob\",\"body\":\"hi\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"conversation_id\":"
            "\"g:0123abcd\",\"body\":\"hi\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":"
            "\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"\xc3\xa9\xe2\x82\xac\","
            "\"to\":\"bob\",\"body\":\"\xf0\x9f\x98\x80 \xe2\x80\xa8\"}",
        /* 64 characters, 128 bytes */
        "{\"type\":\"send\",\"to\":\"bob\",\"body\":\"b\",\"client_msg_id\":\""
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}",
    };
    static const char  *declined[] = {
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"\",\"to\":\"bob\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\","
            "\"conversation_id\":\"dm:alice:bob\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"b b\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"conversation_id\":"
            "\"dm:bob:carol\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"conversation_id\":"
            "\"dm:bob:alice\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"conversation_id\":"
            "\"\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":"
            "\"\\u00e9\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":"
            "\"\\u0000\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":"
            "\"\\x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":"
            "\"tab\there\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\","
            "\"body\":\"y\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\","
            "\"req_id\":1}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\","
            "\"extra\":\"e\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\"}x",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\"",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\",}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":[\"x\"]}",
        "{\"type\":\"send\",\"client_msg_id\":1,\"to\":\"bob\",\"body\":\"x\"}",
        "{\"type\":\"Send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\"}",
        "{\"type\":\"s\\u0065nd\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\"}",
        "{\"typ\\u0065\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c\\\"1\",\"to\":\"bob\",\"body\":\"x\"}",
        "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"conversation_id\":"
            "\"g:a\\\"b\",\"body\":\"x\"}",
        "{}", "", "{", "[]", "\"send\"", "{\"type\":\"send\"}",
        /* 65 characters */
        "{\"type\":\"send\",\"to\":\"bob\",\"body\":\"b\",\"client_msg_id\":\""
            "12345678901234567890123456789012345678901234567890123456789012345\"}",
    };
    char    conv[200], frame[400];
    size_t  i;

    for (i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        same_result(taken[i], 1);
    }

    for (i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
        same_result(declined[i], 0);
    }

    /* the conversation id limit, at and over it */
    for (i = 158; i <= 162; i++) {
        memset(conv, 'g', i);
        conv[i] = '\0';
        snprintf(frame, sizeof(frame), "{\"type\":\"send\",\"client_msg_id\":"
                 "\"c\",\"conversation_id\":\"%s\",\"body\":\"x\"}", conv);
        same_result(frame, i <= NGX_CHAT_WIRE_CONV_MAX);
    }

    /* every prefix of a good frame, and every single-byte change of it:
     * taken or not, never different */
    {
        const char  *good = taken[6];
        size_t       n = strlen(good), k;
        char         buf[256];
        const char   alphabet[] = "\"\\{}[],: \tx0u/";

        for (k = 0; k <= n; k++) {
            memcpy(buf, good, k);
            buf[k] = '\0';
            same_result(buf, k == n ? 1 : -1);
        }

        for (k = 0; k < n; k++) {
            for (i = 0; i < sizeof(alphabet) - 1; i++) {
                memcpy(buf, good, n + 1);
                buf[k] = alphabet[i];
                same_result(buf, -1);
            }
        }
    }
}

static void
test_push(void)
{
    json_t                   *j;
    ngx_chat_proto_result_t   res;

    j = run("{\"type\":\"push_register\",\"req_id\":1,\"endpoint\":"
            "\"https://gw.example/p\",\"token\":\"t1\"}", &res);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "op")),
                      "push_register") == 0, "push_register record: %s",
          res.record);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "endpoint")),
                      "https://gw.example/p") == 0
          && strcmp(json_string_value(json_object_get(j, "token")), "t1")
             == 0, "endpoint and token: %s", res.record);
    CHECK(res.key_len == 5 && memcmp(res.key, "alice", 5) == 0,
          "keyed by the user");
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    j = run("{\"type\":\"push_unregister\",\"req_id\":2}", &res);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "op")),
                      "push_unregister") == 0, "push_unregister record: %s",
          res.record);
    json_decref(j);
    ngx_chat_proto_result_free(&res);

    expect_error("{\"type\":\"push_register\",\"req_id\":3,"
                 "\"endpoint\":\"ftp://x/\",\"token\":\"t\"}",
                 "bad_request", "req_id", "3");
    expect_error("{\"type\":\"push_register\",\"req_id\":3,"
                 "\"endpoint\":\"http://x/ y\",\"token\":\"t\"}",
                 "bad_request", "req_id", "3");
    expect_error("{\"type\":\"push_register\",\"req_id\":3,"
                 "\"endpoint\":\"http://x/\"}",
                 "bad_request", "req_id", "3");
    expect_error("{\"type\":\"push_unregister\"}",
                 "bad_request", NULL, NULL);
}


/* an upload's record: a fresh id and a PUT URL that verifies */
static void
test_upload(void)
{
    json_t                   *j, *r;
    const char               *url, *id, *q;
    ngx_chat_proto_result_t   res;
    const char               *text;
    long long                 n, e;
    char                      sig[NGX_CHAT_MEDIA_SIG_LEN + 1];

    text = "{\"type\":\"upload\",\"req_id\":\"u\",\"conversation_id\":"
           "\"dm:alice:bob\",\"content_type\":\"image/PNG\",\"size\":"
           "1000,\"name\":\"cat.png\"}";

    /* without the settings, uploads are off */
    expect_error(text, "bad_request", "req_id", "\"u\"");

    ngx_chat_proto_handle(&alice_media, text, strlen(text), &res);
    CHECK(res.record != NULL && res.reply == NULL, "upload makes a record: %s",
          res.reply);
    r = res.record ? json_loadb(res.record, res.record_len, 0, NULL) : NULL;
    j = r;
    id = json_string_value(json_object_get(j, "attachment_id"));
    url = json_string_value(json_object_get(j, "url"));

    CHECK(id && ngx_chat_media_valid_id(id, strlen(id)), "an id: %s",
          res.record);
    CHECK(json_integer_value(json_object_get(j, "expires_at"))
          == 1714128000123LL + 60000, "expires with the ttl");
    CHECK(json_integer_value(json_object_get(j, "max_bytes")) == 1000,
          "max_bytes");
    CHECK(res.key_len == 12 && memcmp(res.key, "dm:alice:bob", 12) == 0,
          "keyed by the conversation");

    if (id && url) {
        CHECK(strncmp(url, "https://h.example/media/", 24) == 0
              && strncmp(url + 24, id, 32) == 0, "url: %s", url);
        q = strchr(url, '?');
        CHECK(q && sscanf(q, "?n=%lld&e=%lld&s=%64s", &n, &e, sig) == 3,
              "url query: %s", url);
        CHECK(n == 1000 && e == 1714128000123LL + 60000, "n and e");
        CHECK(ngx_chat_media_verify(media.secret, media.secret_len, "PUT",
                                    id, 32, n, e, sig, strlen(sig)),
              "the PUT signature verifies");
        CHECK(!ngx_chat_media_verify(media.secret, media.secret_len, "GET",
                                     id, 32, n, e, sig, strlen(sig)),
              "not as a GET");
        CHECK(!ngx_chat_media_verify(media.secret, media.secret_len, "PUT",
                                     id, 32, n + 1, e, sig, strlen(sig)),
              "not for another size");
    }

    json_decref(r);
    ngx_chat_proto_result_free(&res);

    text = "{\"type\":\"upload\",\"req_id\":1,\"conversation_id\":"
           "\"dm:alice:bob\",\"content_type\":\"image/png\",\"size\":"
           "1001,\"name\":\"cat.png\"}";
    ngx_chat_proto_handle(&alice_media, text, strlen(text), &res);
    CHECK(res.error && strcmp(res.error, "too_large") == 0,
          "over max_bytes: %s", res.reply);
    ngx_chat_proto_result_free(&res);

    text = "{\"type\":\"upload\",\"req_id\":1,\"conversation_id\":"
           "\"dm:alice:bob\",\"content_type\":\"image/gif\",\"size\":"
           "10,\"name\":\"cat.gif\"}";
    ngx_chat_proto_handle(&alice_media, text, strlen(text), &res);
    CHECK(res.error && strcmp(res.error, "bad_request") == 0,
          "a type not listed: %s", res.reply);
    ngx_chat_proto_result_free(&res);

    text = "{\"type\":\"upload\",\"req_id\":1,\"conversation_id\":"
           "\"dm:bob:carol\",\"content_type\":\"image/png\",\"size\":"
           "10,\"name\":\"cat.png\"}";
    ngx_chat_proto_handle(&alice_media, text, strlen(text), &res);
    CHECK(res.error && strcmp(res.error, "forbidden") == 0,
          "another's direct conversation: %s", res.reply);
    ngx_chat_proto_result_free(&res);
}


int
main(void)
{
    test_ping();
    test_send();
    test_sync_history();
    test_lists();
    test_groups();
    test_set_role();
    test_changes();
    test_bad_frames();
    test_send_fast();
    test_record_failed();
    test_push();
    test_upload();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
